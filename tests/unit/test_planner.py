"""The pure planner, table-driven: given this directory and this state, exactly these actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from provisioner.accounts.plan import (
    Account,
    Action,
    CreateAccount,
    Deactivate,
    DeactivationReason,
    GuardSettings,
    Link,
    LinkAccount,
    MassDeactivationError,
    PlanPolicy,
    Reactivate,
    ReleaseHold,
    UpdateDisplayName,
    UpdateEmail,
    build_plan,
    check_guard,
    guard_trips,
)
from provisioner.employee import DirectoryRead, Employee, SourceProblem, Status

S = "corp.test"
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SERVICE = f"@hauspost:{S}"
POLICY = PlanPolicy(server_name=S, protected=frozenset({SERVICE, f"@boss:{S}"}),
                    time_zone=ZoneInfo("Europe/Berlin"))


def uid(localpart: str) -> str:
    return f"@{localpart}:{S}"


def emp(eid: str, login: str, name: str | None = None, email: str | None = None,
        status: Status = Status.ACTIVE, leave: date | None = None) -> Employee:
    return Employee(employee_id=eid, localpart=login, display_name=name or login.title(),
                    email=email, status=status, leave_date=leave)


def acct(login: str, name: str | None = None, *, deactivated: bool = False,
         admin: bool = False) -> Account:
    return Account(user_id=uid(login), display_name=name or login.title(),
                   deactivated=deactivated, admin=admin)


@dataclass
class Case:
    id: str
    employees: list[Employee]
    links: list[Link] = field(default_factory=list)
    accounts: list[Account] = field(default_factory=list)
    expected: list[Action] = field(default_factory=list)
    complete: bool = True
    problems: list[SourceProblem] = field(default_factory=list)
    now: datetime = NOW
    expected_problems: int | None = None


CASES = [
    Case("new employee -> create with e-mail",
         [emp("1", "anna", "Anna Berg", "anna@corp.test")],
         expected=[CreateAccount("1", uid("anna"), "Anna Berg", "anna@corp.test")]),
    Case("upper-case login -> lower-case MXID",
         [emp("1", "Anna", "Anna Berg")],
         expected=[CreateAccount("1", uid("anna"), "Anna Berg", None)]),
    Case("in sync -> nothing",
         [emp("1", "anna", "Anna Berg", "a@x")],
         links=[Link("1", uid("anna"), "a@x")], accounts=[acct("anna", "Anna Berg")]),
    Case("rename -> display name only, same MXID",
         [emp("1", "anna", "Anna Weber", "a@x")],
         links=[Link("1", uid("anna"), "a@x")], accounts=[acct("anna", "Anna Berg")],
         expected=[UpdateDisplayName("1", uid("anna"), "Anna Berg", "Anna Weber")]),
    Case("login renamed -> never a second account, MXID stays",
         [emp("1", "aweber", "Anna Weber")],
         links=[Link("1", uid("anna"))], accounts=[acct("anna", "Anna Berg")],
         expected=[UpdateDisplayName("1", uid("anna"), "Anna Berg", "Anna Weber")]),
    Case("e-mail changed -> update e-mail",
         [emp("1", "anna", "Anna", "new@x")],
         links=[Link("1", uid("anna"), "old@x")], accounts=[acct("anna", "Anna")],
         expected=[UpdateEmail("1", uid("anna"), "old@x", "new@x")]),
    Case("e-mail removed -> cleared",
         [emp("1", "anna", "Anna")],
         links=[Link("1", uid("anna"), "old@x")], accounts=[acct("anna", "Anna")],
         expected=[UpdateEmail("1", uid("anna"), "old@x", None)]),
    Case("disabled in directory -> deactivate (disabled)",
         [emp("1", "anna", status=Status.INACTIVE)] + [emp(str(i), f"u{i}") for i in range(2, 12)],
         links=[Link("1", uid("anna"))] + [Link(str(i), uid(f"u{i}")) for i in range(2, 12)],
         accounts=[acct("anna")] + [acct(f"u{i}") for i in range(2, 12)],
         expected=[Deactivate("1", uid("anna"), DeactivationReason.DISABLED)]),
    Case("removed from directory -> deactivate (removed)",
         [emp(str(i), f"u{i}") for i in range(2, 12)],
         links=[Link("1", uid("anna"))] + [Link(str(i), uid(f"u{i}")) for i in range(2, 12)],
         accounts=[acct("anna")] + [acct(f"u{i}") for i in range(2, 12)],
         expected=[Deactivate("1", uid("anna"), DeactivationReason.REMOVED)]),
    Case("already deactivated and still gone -> nothing",
         [emp("2", "bob")], links=[Link("1", uid("anna")), Link("2", uid("bob"))],
         accounts=[acct("anna", deactivated=True), acct("bob")]),
    Case("rehire -> reactivate the same account with profile",
         [emp("1", "anna", "Anna Berg", "a@x")],
         links=[Link("1", uid("anna"), "a@x")], accounts=[acct("anna", deactivated=True)],
         expected=[Reactivate("1", uid("anna"), "Anna Berg", "a@x")]),
    Case("rehire under a new login -> still the old account",
         [emp("1", "anna.berg", "Anna Berg")],
         links=[Link("1", uid("anna"))], accounts=[acct("anna", deactivated=True)],
         expected=[Reactivate("1", uid("anna"), "Anna Berg", None)]),
    Case("offboarded by hand, directory still lists them -> stays deactivated",
         [emp("1", "anna")], links=[Link("1", uid("anna"), hold=True)],
         accounts=[acct("anna", deactivated=True)]),
    Case("offboarded by hand, directory now disabled -> hold released",
         [emp("1", "anna", status=Status.INACTIVE)], links=[Link("1", uid("anna"), hold=True)],
         accounts=[acct("anna", deactivated=True)],
         expected=[ReleaseHold("1", uid("anna"))]),
    Case("offboarded by hand, directory removed them -> hold released",
         [emp("2", "bob")], links=[Link("1", uid("anna"), hold=True), Link("2", uid("bob"))],
         accounts=[acct("anna", deactivated=True), acct("bob")],
         expected=[ReleaseHold("1", uid("anna"))]),
    Case("leave date in the future -> stays active",
         [emp("1", "anna", leave=date(2026, 11, 30))], links=[Link("1", uid("anna"))],
         accounts=[acct("anna")]),
    Case("leave date is today -> still active (last working day)",
         [emp("1", "anna", leave=date(2026, 11, 28))], links=[Link("1", uid("anna"))],
         accounts=[acct("anna")]),
    Case("leave date passed in Berlin -> deactivate (left), 23:30 UTC is after midnight",
         [emp("1", "anna", leave=date(2026, 11, 28))] + [emp(str(i), f"u{i}")
                                                          for i in range(2, 12)],
         links=[Link("1", uid("anna"))] + [Link(str(i), uid(f"u{i}")) for i in range(2, 12)],
         accounts=[acct("anna")] + [acct(f"u{i}") for i in range(2, 12)],
         now=datetime(2026, 11, 28, 23, 30, tzinfo=UTC),
         expected=[Deactivate("1", uid("anna"), DeactivationReason.LEFT)]),
    Case("future leaver never provisioned yet -> created",
         [emp("1", "anna", leave=date(2026, 12, 31))],
         expected=[CreateAccount("1", uid("anna"), "Anna", None)]),
    Case("leaver never provisioned -> nothing",
         [emp("1", "anna", leave=date(2026, 1, 31)), emp("2", "bob", status=Status.INACTIVE)]),
    Case("protected account (configured) -> never touched",
         [emp("1", "boss", "Big Boss")], accounts=[acct("boss", "Old Name")]),
    Case("protected linked account -> not renamed, not deactivated",
         [emp("2", "bob")], links=[Link("1", uid("boss")), Link("2", uid("bob"))],
         accounts=[acct("boss"), acct("bob")]),
    Case("Synapse admin -> never touched",
         [emp("1", "root", "Rooty")], accounts=[acct("root", "Admin", admin=True)]),
    Case("service account login in the directory -> never touched",
         [emp("1", "hauspost", "Provisioner")]),
    Case("unlinked account not in directory -> left alone",
         [emp("1", "anna")], links=[Link("1", uid("anna"))],
         accounts=[acct("anna"), acct("stranger")]),
    Case("existing active unlinked account with the login -> adopted, then updated",
         [emp("1", "anna", "Anna Berg", "a@x")], accounts=[acct("anna", "anna")],
         expected=[LinkAccount("1", uid("anna")),
                   UpdateDisplayName("1", uid("anna"), "anna", "Anna Berg"),
                   UpdateEmail("1", uid("anna"), None, "a@x")]),
    Case("deactivated unlinked account with the login -> problem, never reused",
         [emp("1", "anna")], accounts=[acct("anna", deactivated=True)],
         expected_problems=1),
    Case("MXID already linked to another employee -> problem, no second owner",
         [emp("1", "anna"), emp("2", "anna2")],
         links=[Link("1", uid("anna2"))],
         accounts=[acct("anna2")],
         expected=[UpdateDisplayName("1", uid("anna2"), "Anna2", "Anna")],
         expected_problems=1),
    Case("two new employees with the same login -> neither created",
         [emp("1", "anna"), emp("2", "ANNA"), emp("3", "bob")],
         expected=[CreateAccount("3", uid("bob"), "Bob", None)], expected_problems=2),
    Case("invalid localpart -> problem, others proceed",
         [emp("1", "anna müller"), emp("2", "bob")],
         expected=[CreateAccount("2", uid("bob"), "Bob", None)], expected_problems=1),
    Case("incomplete read -> creates and updates, no deactivations",
         [emp("2", "bob", "Bobby")],
         links=[Link("1", uid("anna")), Link("2", uid("bob"))],
         accounts=[acct("anna"), acct("bob")], complete=False,
         expected=[UpdateDisplayName("2", uid("bob"), "Bob", "Bobby")]),
    Case("incomplete read -> not even explicitly disabled ones",
         [emp("1", "anna", status=Status.INACTIVE)], links=[Link("1", uid("anna"))],
         accounts=[acct("anna")], complete=False),
    Case("skipped entry with an id -> its account left alone, others deactivate",
         [emp(str(i), f"u{i}") for i in range(3, 30)],
         links=[Link("1", uid("anna")), Link("2", uid("bob"))]
         + [Link(str(i), uid(f"u{i}")) for i in range(3, 30)],
         accounts=[acct("anna"), acct("bob")] + [acct(f"u{i}") for i in range(3, 30)],
         problems=[SourceProblem("uid=anna,ou=people", "missing cn", employee_id="1")],
         expected=[Deactivate("2", uid("bob"), DeactivationReason.REMOVED)]),
    Case("skipped entry naming nobody -> absence deactivations withheld",
         [emp("2", "bob")], links=[Link("1", uid("anna")), Link("2", uid("bob"))],
         accounts=[acct("anna"), acct("bob")],
         problems=[SourceProblem("hr.csv:7", "not UTF-8")]),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_plan(case: Case) -> None:
    directory = DirectoryRead(employees=tuple(case.employees), problems=tuple(case.problems),
                              complete=case.complete, source="test")
    plan = build_plan(directory, case.links, case.accounts, POLICY, case.now)
    assert list(plan.actions) == case.expected
    if case.expected_problems is not None:
        assert len(plan.problems) - len(case.problems) == case.expected_problems
    else:
        assert plan.problems == tuple(case.problems)


def test_protected_accounts_are_reported_not_planned() -> None:
    directory = DirectoryRead(employees=(emp("1", "boss"), emp("2", "root")))
    plan = build_plan(directory, [], [acct("boss"), acct("root", admin=True)], POLICY, NOW)
    assert plan.actions == ()
    assert plan.protected_skipped == (uid("boss"), uid("root"))


def test_incomplete_read_notes_withheld_deactivations() -> None:
    directory = DirectoryRead(employees=(), complete=False)
    plan = build_plan(directory, [Link("1", uid("anna"))], [acct("anna")], POLICY, NOW)
    assert plan.actions == ()
    assert plan.withheld_deactivations == 1
    assert not plan.directory_empty
    assert not guard_trips(plan, POLICY.guard)


def test_problem_messages_name_the_location() -> None:
    directory = DirectoryRead(employees=(emp("1", "anna"), emp("2", "anna")))
    plan = build_plan(directory, [], [], POLICY, NOW)
    assert [p.location for p in plan.problems] == ["employee 1", "employee 2"]
    assert all("used by more than one employee" in p.message for p in plan.problems)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        build_plan(DirectoryRead(employees=()), [], [], POLICY, datetime(2026, 1, 1))  # noqa: DTZ001


# --- the mass-deactivation guard -----------------------------------------------------------


def _population(n: int) -> tuple[list[Link], list[Account]]:
    return ([Link(str(i), uid(f"u{i}")) for i in range(n)], [acct(f"u{i}") for i in range(n)])


def _plan_with(remaining: int, total: int, guard: GuardSettings | None = None):  # type: ignore[no-untyped-def]
    links, accounts = _population(total)
    directory = DirectoryRead(employees=tuple(emp(str(i), f"u{i}") for i in range(remaining)))
    policy = PlanPolicy(server_name=S, protected=frozenset({SERVICE}),
                        guard=guard or GuardSettings())
    return build_plan(directory, links, accounts, policy, NOW), policy


@pytest.mark.parametrize(("remaining", "total", "trips"), [
    (50, 50, False),   # nothing to deactivate
    (45, 50, False),   # 5 of 50 = 10 %: at the limit, allowed
    (44, 50, True),    # 6 of 50 = 12 % > 10 %
    (35, 50, True),    # a 30 % drop
    (0, 50, True),     # empty directory
    (0, 1, True),      # empty directory, even for one account
    (975, 1000, False),  # 25 of 1000: at the count limit
    (974, 1000, True),   # 26 > 25
])
def test_guard_limits(remaining: int, total: int, trips: bool) -> None:
    plan, policy = _plan_with(remaining, total)
    assert len(plan.deactivations) == total - remaining
    assert plan.managed_active == total
    assert guard_trips(plan, policy.guard) is trips
    if trips:
        with pytest.raises(MassDeactivationError) as exc_info:
            check_guard(plan, policy.guard, force=False)
        assert exc_info.value.count == total - remaining
        assert f"refusing to deactivate {total - remaining} of {total}" in str(exc_info.value)
        assert exc_info.value.exit_code == 5
    check_guard(plan, policy.guard, force=True)  # --force always passes


def test_guard_message_for_an_empty_directory() -> None:
    plan, policy = _plan_with(0, 10)
    assert plan.directory_empty
    with pytest.raises(MassDeactivationError, match="the directory returned no employees"):
        check_guard(plan, policy.guard, force=False)


def test_guard_settings_are_honoured() -> None:
    plan, policy = _plan_with(7, 10, GuardSettings(max_count=3, max_share=0.5))
    assert not guard_trips(plan, policy.guard)  # 3 deactivations: at both limits
    plan, policy = _plan_with(6, 10, GuardSettings(max_count=3, max_share=0.5))
    assert guard_trips(plan, policy.guard)


def test_protected_and_unlinked_accounts_do_not_count_for_the_guard() -> None:
    links, accounts = _population(10)
    links.append(Link("boss", SERVICE))
    accounts += [Account(SERVICE, "svc", admin=True), acct("stranger")]
    directory = DirectoryRead(employees=tuple(emp(str(i), f"u{i}") for i in range(10)))
    plan = build_plan(directory, links, accounts, POLICY, NOW)
    assert plan.managed_active == 10
    assert plan.actions == ()


def test_plan_json_and_counts() -> None:
    directory = DirectoryRead(employees=(emp("1", "anna", "Anna", "a@x"),))
    plan = build_plan(directory, [], [], POLICY, NOW)
    data = plan.to_json()
    assert data["actions"] == [{"action": "create", "employee_id": "1", "user_id": uid("anna"),
                                "display_name": "Anna", "email": "a@x"}]
    assert data["counts"]["create"] == 1
    assert sum(data["counts"].values()) == 1
