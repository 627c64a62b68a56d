"""`scim` as a directory source: stored SCIM users become employees with their SCIM groups,
combined with LDAP / the HR export by employee id; the config refuses what cannot work."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from provisioner.directory.combine import combine_scim
from provisioner.directory.read import read_directory
from provisioner.directory.scim_source import (
    StoredScimUser,
    read_scim_directory,
    scim_directory,
)
from provisioner.employee import DirectoryRead, Employee, SourceProblem, Status
from provisioner.errors import ConfigError
from provisioner.settings import Settings, parse_settings
from provisioner.store import Store, open_store
from provisioner.store.service_models import ScimResourceRow

SERVER = "corp.test"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def body(user_name: str, **extra: Any) -> dict[str, Any]:
    return {"schemas": [USER_SCHEMA], "userName": user_name, **extra}


def stored(scim_id: str, employee_id: str, user_name: str, user_id: str | None = None,
           **extra: Any) -> StoredScimUser:
    return StoredScimUser(scim_id, employee_id, user_id or f"@{user_name}:{SERVER}",
                          body(user_name, **extra))


# --- the source (pure) -------------------------------------------------------------------


def test_scim_users_become_employees_with_their_groups() -> None:
    read = scim_directory(
        [stored("u1", "E1", "anna", displayName="Anna Schmidt",
                emails=[{"value": "anna@corp.test", "primary": True}]),
         stored("u2", "E2", "ben", active=False)],
        {"E1": frozenset({"projekt-apollo", "sales"})}, SERVER)
    assert read == DirectoryRead(employees=(
        Employee("E1", "anna", "Anna Schmidt", "anna@corp.test",
                 groups=frozenset({"projekt-apollo", "sales"})),
        Employee("E2", "ben", "ben", status=Status.INACTIVE)), complete=True, source="scim")


def test_the_linked_matrix_id_keeps_its_localpart_after_a_username_change() -> None:
    read = scim_directory([stored("u1", "E1", "anna.neu", user_id=f"@anna:{SERVER}")], {},
                          SERVER)
    assert [e.localpart for e in read.employees] == ["anna"]


def test_an_unreadable_stored_user_is_a_problem_naming_the_employee() -> None:
    read = scim_directory([stored("u1", "E1", "anna"),
                           StoredScimUser("u2", "E2", None, body("jörg"))], {}, SERVER)
    assert [e.employee_id for e in read.employees] == ["E1"]
    [problem] = read.problems
    assert (problem.location, problem.employee_id) == ("scim:Users/u2", "E2")
    assert "does not give a valid Matrix localpart" in problem.message
    assert read.skipped_employee_ids == {"E2"}


def test_two_users_with_one_login_are_both_skipped() -> None:
    # Linked to other servers' IDs (never ours), both fall back to the same userName.
    read = scim_directory([stored("u1", "E1", "anna", user_id="@x:elsewhere"),
                           stored("u2", "E2", "Anna", user_id="@y:elsewhere")], {}, SERVER)
    assert read.employees == ()
    assert sorted(p.employee_id or "" for p in read.problems) == ["E1", "E2"]
    assert all("duplicate login 'anna'" in p.message for p in read.problems)


# --- combining -----------------------------------------------------------------------------


def ldap(*employees: Employee, complete: bool = True,
         problems: tuple[SourceProblem, ...] = ()) -> DirectoryRead:
    return DirectoryRead(employees=employees, problems=problems, complete=complete,
                         source="ldap:x")


def scim(*employees: Employee, problems: tuple[SourceProblem, ...] = ()) -> DirectoryRead:
    return DirectoryRead(employees=employees, problems=problems, source="scim")


ANNA_LDAP = Employee("E1", "anna", "Anna Schmidt", "anna@corp.test", "Sales", "Berlin", "E9",
                     frozenset({"sales"}), leave_date=date(2026, 12, 31))
ANNA_SCIM = Employee("E1", "anna.s", "A. Schmidt", "other@corp.test",
                     groups=frozenset({"projekt-apollo"}))


def test_scim_alone_is_the_identity_source() -> None:
    read = scim(ANNA_SCIM)
    assert combine_scim(None, read) is read


def test_with_ldap_identity_stays_and_scim_groups_are_added() -> None:
    read = combine_scim(ldap(ANNA_LDAP), scim(ANNA_SCIM))
    assert read.employees == (Employee(
        "E1", "anna", "Anna Schmidt", "anna@corp.test", "Sales", "Berlin", "E9",
        frozenset({"sales", "projekt-apollo"}), Status.ACTIVE, date(2026, 12, 31)),)
    assert (read.source, read.complete) == ("ldap:x + scim", True)


@pytest.mark.parametrize(("ldap_status", "scim_status", "expected"), [
    (Status.ACTIVE, Status.ACTIVE, Status.ACTIVE),
    (Status.ACTIVE, Status.INACTIVE, Status.INACTIVE),   # SCIM active:false wins
    (Status.INACTIVE, Status.ACTIVE, Status.INACTIVE),   # disabled in LDAP stays disabled
])
def test_either_side_saying_inactive_wins(ldap_status: Status, scim_status: Status,
                                          expected: Status) -> None:
    read = combine_scim(ldap(Employee("E1", "anna", "Anna", status=ldap_status)),
                        scim(Employee("E1", "anna", "Anna", status=scim_status)))
    assert [e.status for e in read.employees] == [expected]


def test_scim_only_people_are_kept_so_sync_does_not_deactivate_them() -> None:
    carl = Employee("E3", "carl", "Carl", groups=frozenset({"projekt-apollo"}))
    read = combine_scim(ldap(ANNA_LDAP), scim(carl))
    assert [e.employee_id for e in read.employees] == ["E1", "E3"]
    assert read.employees[1] == carl


def test_a_scim_only_person_with_an_ldap_login_is_skipped_and_reported() -> None:
    impostor = Employee("E7", "anna", "Not Anna")
    read = combine_scim(ldap(ANNA_LDAP), scim(impostor))
    assert [e.employee_id for e in read.employees] == ["E1"]
    [problem] = read.problems
    assert problem.employee_id == "E7" and problem.localpart is None
    assert problem.message == "login 'anna' belongs to another employee in ldap:x; skipped"


def test_an_unreadable_scim_user_leaves_that_employee_out() -> None:
    bad = SourceProblem("scim:Users/u1", "not readable", employee_id="E1")
    read = combine_scim(ldap(ANNA_LDAP, Employee("E2", "ben", "Ben")), scim(problems=(bad,)))
    assert [e.employee_id for e in read.employees] == ["E2"]
    assert read.skipped_employee_ids == {"E1"}


def test_a_skipped_ldap_entry_is_not_replaced_by_its_scim_user() -> None:
    skipped = SourceProblem("uid=anna", "bad entry", employee_id="E1", localpart="anna")
    read = combine_scim(ldap(problems=(skipped,)), scim(ANNA_SCIM))
    assert read.employees == ()
    assert read.skipped_employee_ids == {"E1"}


def test_an_incomplete_ldap_read_stays_incomplete() -> None:
    assert combine_scim(ldap(ANNA_LDAP, complete=False), scim()).complete is False


# --- config and the read through the store -------------------------------------------------


def settings(tmp_path: Path, **sections: Any) -> Settings:
    data = {"server_name": SERVER, "homeserver": {"url": "http://127.0.0.1:8008"},
            "store": {"url": f"sqlite:///{tmp_path / 'hauspost.db'}"}, **sections}
    return parse_settings(data, tmp_path / "hauspost.yaml")


def test_scim_alone_is_a_valid_source(tmp_path: Path) -> None:
    s = settings(tmp_path, directory={"sources": ["scim"]})
    assert s.directory is not None
    assert s.directory.sources == ("scim",) and s.directory.uses_scim


def test_scim_with_the_endpoint_off_names_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, directory={"sources": ["scim"]},
                 service={"scim": {"enabled": False}, "webhook": {"secret_file": "k"}})
    assert str(caught.value) == (
        f"{tmp_path / 'hauspost.yaml'}: directory.sources: lists 'scim' but the SCIM endpoint "
        "of `hauspost serve` is off (service.scim.enabled: false); enable it or drop 'scim'")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'hauspost.db'}")
    yield s
    s.close()


def _row(store: Store, scim_id: str, resource_type: str, data: dict[str, Any],
         employee_id: str | None = None) -> None:
    with store.session() as session:
        session.add(ScimResourceRow(
            id=scim_id, resource_type=resource_type, body={"id": scim_id, **data},
            employee_id=employee_id,
            user_id=f"@{data['userName']}:{SERVER}" if employee_id else None,
            created_at=NOW, updated_at=NOW))


def test_read_directory_with_hr_and_scim_reads_the_store(tmp_path: Path, store: Store) -> None:
    _row(store, "u1", "User", body("carl", displayName="Carl"), "E3")
    _row(store, "u2", "User", body("anna"), "E1")
    _row(store, "g1", "Group", {"displayName": "projekt-apollo",
                                "members": [{"value": "u1"}, {"value": "u2"}]})
    (tmp_path / "hr.csv").write_text("Nr;Login;Name\nE1;anna;Anna Schmidt\nE2;ben;Ben\n",
                                     encoding="utf-8")
    s = settings(tmp_path, directory={
        "sources": ["hr_csv", "scim"], "time_zone": "Europe/Berlin",
        "hr_csv": {"path": "hr.csv", "columns": {"employee_id": "Nr", "localpart": "Login",
                                                 "display_name": "Name"}}})
    read = read_directory(s)
    assert [(e.employee_id, e.localpart, e.display_name, e.groups) for e in read.employees] == [
        ("E1", "anna", "Anna Schmidt", frozenset({"projekt-apollo"})),
        ("E2", "ben", "Ben", frozenset()),
        ("E3", "carl", "Carl", frozenset({"projekt-apollo"}))]
    assert read.source == f"hr_csv:{tmp_path / 'hr.csv'} + scim"
    assert read_scim_directory(s.store_url, SERVER).source == "scim"
