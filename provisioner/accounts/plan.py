"""The pure planner: directory read + stored links + Synapse accounts + policy + now -> actions.

No I/O here. Everything the planner needs comes in as arguments, so a table of
"given this directory and this state, exactly these actions" tests it completely.

Rules (docs/accounts.md explains each):
- An employee's Matrix ID is `@<localpart>:<server>` when the account is created, and the
  link employee id <-> MXID never changes afterwards: a rename updates the display name.
- A rehire (linked, deactivated, active again) reactivates the same account, unless the
  account was offboarded by hand and the directory never let go of the person (`hold`).
- Protected accounts (service account, configured admins, Synapse admins) are never touched.
- Active accounts nothing explains (no employee link, not planned in this run, not
  protected, not a skipped entry's) are *unexplained*: reported, and deactivated when the
  policy says `deactivate` (through the guard, like every deactivation).
- An incomplete directory read deactivates nobody. The account of a skipped (bad) entry
  is left as it is; a bad entry naming nobody stops deactivations for *absence* in that
  run (a broken entry looks like a removed person). The mass-deactivation guard refuses
  runs over its limits, or any deactivation on an empty directory, unless forced.
"""

from __future__ import annotations

import enum
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from provisioner.directory.config import UnexplainedRule
from provisioner.directory.leave import effective_status
from provisioner.employee import DirectoryRead, Employee, Link, SourceProblem, Status
from provisioner.errors import HauspostError

EXIT_GUARD = 5

# Synapse's rule for new localparts (synapse.types.UserID / registration).
_LOCALPART = re.compile(r"^[a-z0-9._=/+-]+$")


# --- inputs ------------------------------------------------------------------------------




@dataclass(frozen=True)
class Account:
    """The current state of one Synapse account (from the admin API's user list)."""

    user_id: str
    display_name: str | None
    deactivated: bool = False
    admin: bool = False


@dataclass(frozen=True)
class GuardSettings:
    max_count: int = 25
    max_share: float = 0.10


@dataclass(frozen=True)
class PlanPolicy:
    server_name: str
    protected: frozenset[str] = frozenset()
    guard: GuardSettings = field(default_factory=GuardSettings)
    time_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    #: What to do with active accounts no employee, service account or bot explains.
    unexplained: UnexplainedRule = "report"


# --- actions -----------------------------------------------------------------------------


class DeactivationReason(enum.Enum):
    DISABLED = "disabled"
    LEFT = "left"
    REMOVED = "removed"
    UNEXPLAINED = "unexplained"

    @property
    def text(self) -> str:
        return {
            "disabled": "disabled in the directory",
            "left": "leave date has passed",
            "removed": "no longer in the directory",
            "unexplained": "no employee record, service account or bot explains this account",
        }[self.value]


@dataclass(frozen=True)
class Action:
    kind: ClassVar[str] = "action"
    #: True when applying it writes to Synapse (False: only the store changes).
    writes_synapse: ClassVar[bool] = True
    employee_id: str
    user_id: str

    def describe(self) -> str:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.kind}
        for key, value in self.__dict__.items():
            out[key] = value.value if isinstance(value, enum.Enum) else value
        return out


@dataclass(frozen=True)
class CreateAccount(Action):
    kind: ClassVar[str] = "create"
    display_name: str
    email: str | None = None

    def describe(self) -> str:
        mail = f" <{self.email}>" if self.email else ""
        return f"create {self.user_id} ({self.display_name}{mail}) for employee {self.employee_id}"


@dataclass(frozen=True)
class LinkAccount(Action):
    """Adopt an existing, unlinked, active account whose MXID the employee's localpart gives
    (e.g. made by an LDAP login before the first sync)."""

    kind: ClassVar[str] = "link"
    writes_synapse: ClassVar[bool] = False

    def describe(self) -> str:
        return f"link existing {self.user_id} to employee {self.employee_id}"


@dataclass(frozen=True)
class UpdateDisplayName(Action):
    kind: ClassVar[str] = "set_display_name"
    old: str | None
    new: str

    def describe(self) -> str:
        return f"rename {self.user_id}: {self.old!r} -> {self.new!r}"


@dataclass(frozen=True)
class UpdateEmail(Action):
    kind: ClassVar[str] = "set_email"
    old: str | None
    new: str | None

    def describe(self) -> str:
        return f"e-mail of {self.user_id}: {self.old or '(none)'} -> {self.new or '(none)'}"


@dataclass(frozen=True)
class Deactivate(Action):
    kind: ClassVar[str] = "deactivate"
    reason: DeactivationReason

    def describe(self) -> str:
        return f"deactivate {self.user_id} (employee {self.employee_id}: {self.reason.text})"


@dataclass(frozen=True)
class DeactivateUnexplained(Deactivate):
    """Deactivate an account hauspost never made and no employee explains (created by hand,
    by an old login, by an admin tool). There is no employee and no stored link."""

    def describe(self) -> str:
        return f"deactivate {self.user_id} (unexplained: {self.reason.text})"


@dataclass(frozen=True)
class Reactivate(Action):
    kind: ClassVar[str] = "reactivate"
    display_name: str
    email: str | None = None

    def describe(self) -> str:
        return f"reactivate {self.user_id} (employee {self.employee_id} is back)"


@dataclass(frozen=True)
class ReleaseHold(Action):
    """The directory now agrees the person is gone: a later return counts as a rehire."""

    kind: ClassVar[str] = "release_hold"
    writes_synapse: ClassVar[bool] = False

    def describe(self) -> str:
        return f"release the offboarding hold on {self.user_id} (directory agrees)"


ACTION_KINDS = ("create", "link", "set_display_name", "set_email", "reactivate",
                "deactivate", "release_hold")


# --- result ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    #: Directory problems plus the planner's own (each skipped, the rest planned).
    problems: tuple[SourceProblem, ...] = ()
    notes: tuple[str, ...] = ()
    #: Employees whose account is protected, so nothing was planned for them.
    protected_skipped: tuple[str, ...] = ()
    #: Linked, active, unprotected accounts: the population the guard's share refers to.
    managed_active: int = 0
    #: Deactivations not planned because the read was incomplete or had bad entries.
    withheld_deactivations: int = 0
    directory_empty: bool = False
    #: Active accounts no employee, service account or bot explains (sorted user IDs).
    unexplained: tuple[str, ...] = ()

    @property
    def deactivations(self) -> tuple[Deactivate, ...]:
        return tuple(a for a in self.actions if isinstance(a, Deactivate))

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)

    def counts(self) -> dict[str, int]:
        counter = Counter(a.kind for a in self.actions)
        return {kind: counter.get(kind, 0) for kind in ACTION_KINDS}

    def to_json(self) -> dict[str, Any]:
        return {
            "actions": [a.to_json() for a in self.actions],
            "counts": self.counts(),
            "problems": [{"location": p.location, "message": p.message} for p in self.problems],
            "notes": list(self.notes),
            "protected_skipped": list(self.protected_skipped),
            "managed_active": self.managed_active,
            "withheld_deactivations": self.withheld_deactivations,
            "unexplained": list(self.unexplained),
        }


class MassDeactivationError(HauspostError):
    """The run would deactivate more than the guard allows; nothing was changed."""

    exit_code = EXIT_GUARD

    def __init__(self, count: int, managed: int, guard: GuardSettings, *,
                 empty: bool) -> None:
        self.count = count
        self.managed = managed
        share = count / managed if managed else 1.0
        why = "the directory returned no employees; " if empty else ""
        super().__init__(
            f"{why}refusing to deactivate {count} of {managed} managed accounts "
            f"({share:.0%}; limits: {guard.max_count} accounts or {guard.max_share:.0%}); "
            "nothing was changed. Check the directory, then re-run with --force if intended"
        )


def guard_trips(plan: Plan, guard: GuardSettings) -> bool:
    count = len(plan.deactivations)
    if count == 0:
        return False
    if plan.directory_empty:
        return True
    return count > guard.max_count or count > guard.max_share * plan.managed_active


def check_guard(plan: Plan, guard: GuardSettings, *, force: bool) -> None:
    """Raise MassDeactivationError when the plan exceeds the guard and is not forced."""
    if not force and guard_trips(plan, guard):
        raise MassDeactivationError(len(plan.deactivations), plan.managed_active, guard,
                                      empty=plan.directory_empty)


# --- the planner -------------------------------------------------------------------------


def employee_active(employee: Employee, now: datetime, tz: ZoneInfo) -> bool:
    """Active in the directory and not past the end of the leave date in the company zone."""
    return effective_status(employee, now, tz) is Status.ACTIVE


def user_id_for(localpart: str, server_name: str) -> str:
    return f"@{localpart.lower()}:{server_name}"


def _localpart(user_id: str) -> str:
    return user_id[1:].split(":", 1)[0]


def _duplicates(values: Iterable[str]) -> set[str]:
    return {v for v, n in Counter(values).items() if n > 1}


def build_plan(directory: DirectoryRead, links: Sequence[Link], accounts: Sequence[Account],
               policy: PlanPolicy, now: datetime) -> Plan:
    """Compute the actions that bring Synapse in line with the directory. Pure."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    account_by_id = {a.user_id: a for a in accounts}
    link_by_employee = {lk.employee_id: lk for lk in links}
    link_by_user = {lk.user_id: lk for lk in links}
    protected = set(policy.protected) | {a.user_id for a in accounts if a.admin}

    problems: list[SourceProblem] = list(directory.problems)
    notes: list[str] = []
    actions: list[Action] = []
    deactivations: list[Deactivate] = []
    protected_skipped: list[str] = []

    employees = sorted(directory.employees, key=lambda e: e.employee_id)
    # Accounts of entries the source skipped as bad are left exactly as they are.
    skipped_ids = directory.skipped_employee_ids
    skipped_users = {user_id_for(lp, policy.server_name) for lp in directory.skipped_localparts}
    employees = [e for e in employees if e.employee_id not in skipped_ids]
    present_ids = {e.employee_id for e in employees} | skipped_ids
    dup_ids = _duplicates(e.employee_id for e in employees)
    for emp_id in sorted(dup_ids):
        problems.append(SourceProblem(f"employee {emp_id}",
                                      "employee id occurs more than once; skipped"))
    # A localpart claimed by two unlinked employees can't go to either of them.
    claims = [user_id_for(e.localpart, policy.server_name)
              for e in employees if e.employee_id not in link_by_employee
              and employee_active(e, now, policy.time_zone)]
    dup_claims = _duplicates(claims)

    for emp in employees:
        if emp.employee_id in dup_ids:
            continue
        active = employee_active(emp, now, policy.time_zone)
        link = link_by_employee.get(emp.employee_id)
        if link is not None:
            _plan_linked(emp, link, active, account_by_id, protected, policy,
                         actions, deactivations, problems, notes, protected_skipped)
            continue
        if not active:
            continue  # never provisioned and not (or no longer) employed: nothing to do
        localpart = emp.localpart.lower()
        location = f"employee {emp.employee_id}"
        if not _LOCALPART.match(localpart):
            problems.append(SourceProblem(
                location, f"login {emp.localpart!r} is not a valid Matrix localpart "
                          "(allowed: a-z 0-9 . _ = - / +); skipped"))
            continue
        user_id = user_id_for(localpart, policy.server_name)
        if user_id in dup_claims:
            problems.append(SourceProblem(
                location, f"login {emp.localpart!r} is used by more than one employee; skipped"))
            continue
        if user_id in protected:
            protected_skipped.append(user_id)
            continue
        owner = link_by_user.get(user_id)
        if owner is not None:
            problems.append(SourceProblem(
                location, f"{user_id} already belongs to employee {owner.employee_id} "
                          "(Matrix IDs are never reused); skipped"))
            continue
        existing = account_by_id.get(user_id)
        if existing is None:
            actions.append(CreateAccount(emp.employee_id, user_id, emp.display_name, emp.email))
        elif existing.deactivated:
            problems.append(SourceProblem(
                location, f"{user_id} exists, is deactivated and is not managed by hauspost; "
                          "skipped (a deactivated Matrix ID cannot be given to someone new)"))
        else:
            actions.append(LinkAccount(emp.employee_id, user_id))
            if existing.display_name != emp.display_name:
                actions.append(UpdateDisplayName(emp.employee_id, user_id,
                                                 existing.display_name, emp.display_name))
            if emp.email:
                actions.append(UpdateEmail(emp.employee_id, user_id, None, emp.email))

    unexplained = _unexplained(accounts, link_by_user, protected, actions, skipped_users,
                               dup_claims)
    if policy.unexplained == "deactivate":
        deactivations.extend(DeactivateUnexplained("", user_id, DeactivationReason.UNEXPLAINED)
                             for user_id in unexplained)

    anonymous_problems = [p for p in directory.problems if not p.employee_id and not p.localpart]
    for link in sorted(links, key=lambda lk: lk.employee_id):
        if link.employee_id in present_ids or link.user_id in skipped_users:
            continue
        account = account_by_id.get(link.user_id)
        if account is None or link.user_id in protected:
            continue
        if account.deactivated:
            if link.hold and directory.complete and not anonymous_problems:
                actions.append(ReleaseHold(link.employee_id, link.user_id))
            continue
        deactivations.append(Deactivate(link.employee_id, link.user_id,
                                        DeactivationReason.REMOVED))

    withheld = 0
    if not directory.complete:
        withheld = len(deactivations)
        deactivations = []
        if withheld:
            notes.append(f"the directory read was incomplete: {withheld} deactivation(s) "
                         "withheld; nobody is deactivated until a complete read")
    elif anonymous_problems:
        # A bad entry the source could not attribute looks like a removed person (or may be
        # the person an unexplained account belongs to); don't deactivate over a typo.
        absent = (DeactivationReason.REMOVED, DeactivationReason.UNEXPLAINED)
        removed = [d for d in deactivations if d.reason in absent]
        withheld = len(removed)
        deactivations = [d for d in deactivations if d.reason not in absent]
        if withheld:
            notes.append(f"{len(anonymous_problems)} bad directory entries name nobody: {withheld} "
                         "deactivation(s) of people missing from the read withheld until "
                         "the entries are fixed")

    managed_active = sum(
        1 for lk in links
        if lk.user_id not in protected
        and (acct := account_by_id.get(lk.user_id)) is not None and not acct.deactivated
    )
    return Plan(
        actions=tuple(actions) + tuple(deactivations),
        problems=tuple(problems),
        notes=tuple(notes),
        protected_skipped=tuple(sorted(set(protected_skipped))),
        managed_active=managed_active,
        withheld_deactivations=withheld,
        directory_empty=directory.complete and not directory.employees,
        unexplained=unexplained,
    )


def _unexplained(accounts: Sequence[Account], link_by_user: dict[str, Link],
                 protected: set[str], actions: Sequence[Action], skipped_users: set[str],
                 dup_claims: set[str]) -> tuple[str, ...]:
    """Active accounts that nothing explains: no link, not adopted or created now, not
    protected (service account, bot, admins), not the account of a skipped or ambiguous
    directory entry (those are left as they are and reported as problems)."""
    explained = (set(link_by_user) | protected | {a.user_id for a in actions}
                 | skipped_users | dup_claims)
    return tuple(sorted(a.user_id for a in accounts
                        if not a.deactivated and a.user_id not in explained))


def _plan_linked(emp: Employee, link: Link, active: bool, account_by_id: dict[str, Account],
                 protected: set[str], policy: PlanPolicy, actions: list[Action],
                 deactivations: list[Deactivate], problems: list[SourceProblem],
                 notes: list[str], protected_skipped: list[str]) -> None:
    user_id = link.user_id
    if user_id in protected:
        protected_skipped.append(user_id)
        return
    account = account_by_id.get(user_id)
    if account is None:
        problems.append(SourceProblem(
            f"employee {emp.employee_id}",
            f"linked account {user_id} is missing from Synapse; nothing done"))
        return
    if emp.localpart.lower() != _localpart(user_id):
        notes.append(f"employee {emp.employee_id}: login changed to {emp.localpart!r}; the "
                     f"Matrix ID stays {user_id}")
    if not active:
        # Also when Synapse already shows the deactivation but the store does not (the
        # run that made it died before recording it): applying it again is harmless and
        # writes the missing audit row.
        if not account.deactivated or (link.active and not link.hold):
            reason = (DeactivationReason.DISABLED if emp.status is not Status.ACTIVE
                      else DeactivationReason.LEFT)
            deactivations.append(Deactivate(emp.employee_id, user_id, reason))
        elif link.hold:
            actions.append(ReleaseHold(emp.employee_id, user_id))
        return
    if account.deactivated:
        if link.hold:
            notes.append(f"{user_id} was offboarded by hand and stays deactivated while "
                         f"the directory still lists employee {emp.employee_id} as active")
            return
        actions.append(Reactivate(emp.employee_id, user_id, emp.display_name, emp.email))
        return
    if account.display_name != emp.display_name:
        actions.append(UpdateDisplayName(emp.employee_id, user_id, account.display_name,
                                         emp.display_name))
    elif link.display_name is not None and link.display_name != emp.display_name:
        # Synapse has the new name, the store the old one: a rename that reached Synapse
        # whose record was lost. Apply it again (a no-op there) so it is recorded and audited.
        actions.append(UpdateDisplayName(emp.employee_id, user_id, link.display_name,
                                         emp.display_name))
    if (link.email or None) != (emp.email or None):
        actions.append(UpdateEmail(emp.employee_id, user_id, link.email, emp.email))
