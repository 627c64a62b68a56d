"""The LDAP source against a real slapd: every test seeds its own OU and reads only that."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ldap3
import pytest

from provisioner.directory.config import LdapSourceOptions
from provisioner.directory.errors import DirectoryUnavailableError
from provisioner.directory.ldap_source import LdapSource, login_filter
from provisioner.employee import Employee, SourceProblem, Status
from provisioner.homeserver.synapse_process import free_port
from provisioner.settings import LdapSettings
from tests.harness.ldap_seed import (
    SeedPerson,
    SlapdVariant,
    TlsFiles,
    add_groups,
    add_ou,
    add_people,
    make_people,
    make_tls_files,
    people_ldif,
    start_slapd_variant,
    start_slapd_with_memberof,
    unique_name,
)
from tests.harness.slapd_server import (
    ADMIN_DN,
    ADMIN_PASSWORD,
    GROUPS_DN,
    PEOPLE_DN,
    SlapdServer,
    start_slapd,
)

ODD_GROUP = "R&D (Berlin) *\\"


@dataclass
class Tree:
    """A per-test subtree: people in `people_dn`, groups in `groups_dn`."""

    conn: ldap3.Connection
    people_dn: str
    groups_dn: str
    password_file: Path
    uri: str

    def settings(self, **source: Any) -> LdapSettings:
        return LdapSettings(
            uri=self.uri, base_dn=self.people_dn, bind_dn=ADMIN_DN,
            bind_password_file=self.password_file,
            source=LdapSourceOptions(**{"groups_base_dn": self.groups_dn, **source}),
        )

    def add(self, people: list[SeedPerson]) -> None:
        add_people(self.conn, people, self.people_dn)

    def groups(self, groups: dict[str, list[str]]) -> None:
        add_groups(self.conn, groups, self.groups_dn, self.people_dn)

    def dn(self, uid: str) -> str:
        return f"uid={uid},{self.people_dn}"


@pytest.fixture
def tree(slapd: SlapdServer, tmp_path: Path) -> Iterator[Tree]:
    conn = slapd.connection()
    name = unique_name("t")
    password_file = tmp_path / "bind_password"
    password_file.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
    yield Tree(conn=conn, people_dn=add_ou(conn, name, PEOPLE_DN),
               groups_dn=add_ou(conn, name, GROUPS_DN), password_file=password_file,
               uri=slapd.uri)
    conn.unbind()


def person(uid: str, number: str | None, cn: str | None = None, **kw: Any) -> SeedPerson:
    kw.setdefault("mail", f"{uid}@hauspost.test")
    return SeedPerson(uid=uid, cn=cn or f"Person {uid}", employee_number=number, **kw)


def test_reads_inet_org_person_with_group_of_names_groups(tree: Tree) -> None:
    tree.add([
        person("anna", "E1", "Anna Schmidt", department="Sales", location="Berlin"),
        person("ben", "E2", "Ben Müller", department="IT", location="Köln", manager_uid="anna"),
        person("cara", "E3", "Cara Nowak", manager_uid="anna"),
    ])
    tree.groups({"Sales": ["anna", "ben"], ODD_GROUP: ["ben"]})

    read = LdapSource(tree.settings()).read()

    assert read.complete is True
    assert read.problems == ()
    assert sorted(read.employees, key=lambda e: e.employee_id) == [
        Employee("E1", "anna", "Anna Schmidt", "anna@hauspost.test", "Sales", "Berlin", None,
                 frozenset({"Sales"})),
        Employee("E2", "ben", "Ben Müller", "ben@hauspost.test", "IT", "Köln", "E1",
                 frozenset({"Sales", ODD_GROUP})),
        Employee("E3", "cara", "Cara Nowak", "cara@hauspost.test", None, None, "E1",
                 frozenset()),
    ]


def test_preferred_language_is_read_as_a_language_code_and_never_rejects_an_entry(
        tree: Tree) -> None:
    tree.add([
        person("dora", "E1", "Dora Yılmaz", extra={"preferredLanguage": ["de-DE"]}),
        person("ed", "E2", "Ed Brown", extra={"preferredLanguage": ["en-GB, de;q=0.8"]}),
        person("fay", "E3", "Fay 王", extra={"preferredLanguage": ["Klingonisch!?"]}),
        person("gus", "E4", "Gus Öztürk"),
    ])
    read = LdapSource(tree.settings()).read()
    assert read.problems == ()
    assert {e.localpart: e.language for e in read.employees} == {
        "dora": "de", "ed": "en", "fay": None, "gus": None}
    # Another attribute can be named (e.g. a custom one); one not set means no language.
    other = LdapSource(tree.settings(language_attribute="description")).read()
    assert {e.language for e in other.employees} == {None}


def test_entry_missing_a_required_attribute_is_reported_and_skipped(tree: Tree) -> None:
    tree.add([person("anna", "E1"), person("nonumber", None), person("carl", "E3")])

    read = LdapSource(tree.settings()).read()

    assert sorted(e.localpart for e in read.employees) == ["anna", "carl"]
    assert read.problems == (SourceProblem(
        tree.dn("nonumber"),
        "missing required attribute 'employeeNumber' (employee_id); skipped",
        employee_id=None, localpart="nonumber"),)
    # Identified by login, so the planner can leave that account alone: still complete.
    assert read.complete is True
    assert read.skipped_localparts == {"nonumber"}


def test_disabled_entry_is_read_as_inactive(tree: Tree) -> None:
    tree.add([person("anna", "E1", extra={"employeeType": ["staff"]}),
              person("dora", "E2", extra={"employeeType": ["Disabled"]})])

    read = LdapSource(tree.settings(disabled_attribute="employeeType",
                                    disabled_values=("disabled",))).read()

    assert {e.localpart: e.status for e in read.employees} == {
        "anna": Status.ACTIVE, "dora": Status.INACTIVE}
    assert read.problems == ()


def test_login_filter_finds_exactly_the_active_employees(tree: Tree) -> None:
    tree.add([person("anna", "E1", extra={"employeeType": ["staff"]}),
              person("dora", "E2", extra={"employeeType": ["disabled"]}),
              person("eve", "E3")])
    settings = tree.settings(disabled_attribute="employeeType", disabled_values=("disabled",))

    tree.conn.search(tree.people_dn, login_filter(settings), attributes=["uid"])

    assert sorted(str(e.uid) for e in tree.conn.entries) == ["anna", "eve"]
    assert {e.localpart for e in LdapSource(settings).read().employees
            if e.status is Status.ACTIVE} == {"anna", "eve"}


def test_login_that_is_no_valid_localpart_is_reported(tree: Tree) -> None:
    tree.add([person("anna", "E1"), person("jörg", "E2", mail="joerg@hauspost.test")])

    read = LdapSource(tree.settings()).read()

    assert [e.localpart for e in read.employees] == ["anna"]
    assert len(read.problems) == 1
    assert read.problems[0].location == f"uid=jörg,{tree.people_dn}"
    assert read.problems[0].message == (
        "login 'jörg' contains characters not allowed in a Matrix ID: 'ö' "
        "(allowed: a-z 0-9 . _ = - /) (attribute 'uid'); skipped")
    assert read.problems[0].employee_id == "E2"


def test_duplicate_logins_and_ids_are_all_reported_and_none_kept(tree: Tree) -> None:
    east = add_ou(tree.conn, "east", tree.people_dn)
    west = add_ou(tree.conn, "west", tree.people_dn)
    add_people(tree.conn, [person("sam", "E1"), person("ida", "E7")], east)
    add_people(tree.conn, [person("sam", "E2"), person("ole", "E7"), person("eva", "E9")],
               west)

    read = LdapSource(tree.settings()).read()

    assert [e.localpart for e in read.employees] == ["eva"]
    got = {(p.location, p.message) for p in read.problems}
    assert got == {
        (f"uid=sam,{east}", f"duplicate login 'sam' (also at uid=sam,{west}); skipped"),
        (f"uid=sam,{west}", f"duplicate login 'sam' (also at uid=sam,{east}); skipped"),
        (f"uid=ida,{east}", f"duplicate employee id 'E7' (also at uid=ole,{west}); skipped"),
        (f"uid=ole,{west}", f"duplicate employee id 'E7' (also at uid=ida,{east}); skipped"),
    }
    assert read.skipped_employee_ids == {"E1", "E2", "E7"}


@pytest.mark.parametrize("configured", ["*", "R&D*", "Other)(cn=*", "*)(|(cn=*"])
def test_allowed_group_value_with_filter_characters_does_not_inject(
    tree: Tree, configured: str
) -> None:
    tree.add([person("anna", "E1"), person("ben", "E2"), person("cara", "E3")])
    tree.groups({ODD_GROUP: ["anna", "ben"], "Other": ["cara"]})

    read = LdapSource(tree.settings(allowed_groups=(configured,))).read()

    # Each value is a literal group name that no group has: nobody matches.
    assert read.employees == ()
    assert read.problems == ()
    assert read.complete is True


def test_allowed_group_with_filter_characters_matches_literally(tree: Tree) -> None:
    tree.add([person("anna", "E1"), person("ben", "E2"), person("cara", "E3")])
    tree.groups({ODD_GROUP: ["anna", "ben"], "Other": ["cara"]})

    read = LdapSource(tree.settings(allowed_groups=(ODD_GROUP,))).read()

    assert sorted(e.localpart for e in read.employees) == ["anna", "ben"]
    assert read.employees[0].groups == frozenset({ODD_GROUP})


def test_wrong_bind_password_raises_a_clear_error_without_the_password(tree: Tree) -> None:
    tree.password_file.write_text("not-the-password\n", encoding="utf-8")

    with pytest.raises(DirectoryUnavailableError) as caught:
        LdapSource(tree.settings()).read()

    message = str(caught.value)
    assert message == f"LDAP bind to {tree.uri} as {ADMIN_DN} failed: invalidCredentials"
    assert "not-the-password" not in message


def test_start_tls_refused_by_the_server_is_an_error_not_a_plaintext_fallback(
    tree: Tree
) -> None:
    settings = replace(tree.settings(), start_tls=True)

    with pytest.raises(DirectoryUnavailableError) as caught:
        LdapSource(settings).read()

    assert str(caught.value).startswith(f"StartTLS with {tree.uri} failed:")


def test_unreachable_server_raises_a_clear_error(tree: Tree) -> None:
    uri = f"ldap://127.0.0.1:{free_port()}"
    settings = replace(tree.settings(connect_timeout=2.0), uri=uri)

    with pytest.raises(DirectoryUnavailableError) as caught:
        LdapSource(settings).read()

    assert str(caught.value).startswith(f"cannot connect to LDAP server {uri} as {ADMIN_DN}:")


def test_failed_search_returns_an_incomplete_read_instead_of_raising(tree: Tree) -> None:
    settings = replace(tree.settings(), base_dn=f"ou=missing,{tree.people_dn}")

    read = LdapSource(settings).read()

    assert read.complete is False
    assert read.employees == ()
    assert len(read.problems) == 1
    assert read.problems[0].location == f"{tree.uri} ou=missing,{tree.people_dn}"
    assert read.problems[0].message.startswith(
        "employee search failed after 0 entries: noSuchObject (code 32)")


def test_failed_group_search_reads_nobody_and_is_incomplete(tree: Tree) -> None:
    tree.add([person("anna", "E1")])
    settings = tree.settings(groups_base_dn=f"ou=missing,{tree.groups_dn}")

    read = LdapSource(settings).read()

    assert read.complete is False
    assert read.employees == ()
    assert [(p.location, p.message) for p in read.problems] == [(
        f"{tree.uri} ou=missing,{tree.groups_dn}",
        "group search failed: noSuchObject (code 32); nobody was read, so nobody is "
        "deactivated")]


@pytest.fixture(scope="module")
def big_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    """A separate slapd loaded offline with 2,500 employees (slapadd is far faster)."""
    server = start_slapd(tmp_path_factory.mktemp("slapd2500"),
                         seed_ldif=people_ldif(make_people(2500)))
    yield server
    server.stop()


def test_paged_search_returns_every_entry(big_slapd: SlapdServer, tmp_path: Path) -> None:
    password_file = tmp_path / "bind_password"
    password_file.write_text(ADMIN_PASSWORD, encoding="utf-8")
    settings = LdapSettings(uri=big_slapd.uri, base_dn=PEOPLE_DN, bind_dn=ADMIN_DN,
                            bind_password_file=password_file,
                            source=LdapSourceOptions(paged_size=300, group_mode="none"))
    source = LdapSource(settings)

    read = source.read()

    assert read.complete is True
    assert read.problems == ()
    assert {e.employee_id for e in read.employees} == {f"E{i:05d}" for i in range(2500)}
    assert source.last_page_count == 9  # ceil(2500 / 300)
    by_id = {e.employee_id: e for e in read.employees}
    assert by_id["E01234"].manager_id == "E01230"
    assert by_id["E01230"].manager_id == "E00000"


def test_server_lost_mid_read_keeps_what_was_read_and_marks_it_incomplete(
    tmp_path: Path
) -> None:
    server = start_slapd(tmp_path / "slapd", seed_ldif=people_ldif(make_people(250)))
    try:
        password_file = tmp_path / "bind_password"
        password_file.write_text(ADMIN_PASSWORD, encoding="utf-8")
        settings = LdapSettings(uri=server.uri, base_dn=PEOPLE_DN, bind_dn=ADMIN_DN,
                                bind_password_file=password_file,
                                source=LdapSourceOptions(paged_size=100, group_mode="none"))

        class StopsTheServerAfterOnePage(LdapSource):
            def _paged(self, conn: ldap3.Connection, base: str, search_filter: str,
                       attributes: list[str], *, count_pages: bool = False
                       ) -> Iterator[dict[str, Any]]:
                for index, item in enumerate(super()._paged(
                        conn, base, search_filter, attributes, count_pages=count_pages)):
                    if index == 99:
                        server.stop()  # the second page request then meets a dead server
                    yield dict(item)

        read = StopsTheServerAfterOnePage(settings).read()
    finally:
        server.stop()

    assert read.complete is False
    assert len(read.employees) == 100
    assert len(read.problems) == 1
    assert read.problems[0].message.startswith("employee search failed after 100 entries: ")
    assert read.problems[0].message.endswith(
        "; the read is incomplete, so nobody is deactivated")


@pytest.fixture(scope="module")
def memberof_slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    server = start_slapd_with_memberof(tmp_path_factory.mktemp("slapd-memberof"))
    conn = server.connection()
    add_people(conn, [person("anna", "E1"), person("ben", "E2"), person("cara", "E3"),
                      person("dora", "E4")])
    # Added online, so the overlay writes memberOf on the members.
    add_groups(conn, {ODD_GROUP: ["anna", "ben"], "Other": ["cara"],
                      "Smith, Team": ["ben", "dora"]})
    conn.unbind()
    yield server
    server.stop()


def member_of_settings(server: SlapdServer, tmp_path: Path, *allowed: str) -> LdapSettings:
    password_file = tmp_path / "bind_password"
    password_file.write_text(ADMIN_PASSWORD, encoding="utf-8")
    return LdapSettings(uri=server.uri, base_dn=PEOPLE_DN, bind_dn=ADMIN_DN,
                        bind_password_file=password_file,
                        source=LdapSourceOptions(group_mode="member_of",
                                                 groups_base_dn=GROUPS_DN,
                                                 allowed_groups=allowed))


def test_member_of_mode_reads_group_names_from_member_of(memberof_slapd: SlapdServer,
                                                         tmp_path: Path) -> None:
    read = LdapSource(member_of_settings(memberof_slapd, tmp_path)).read()

    assert read.problems == ()
    assert {e.localpart: e.groups for e in read.employees} == {
        "anna": frozenset({ODD_GROUP}),
        "ben": frozenset({ODD_GROUP, "Smith, Team"}),
        "cara": frozenset({"Other"}),
        "dora": frozenset({"Smith, Team"}),
    }


@pytest.mark.parametrize(("allowed", "expected"), [
    ((ODD_GROUP,), {"anna", "ben"}),            # DN-escaped, then filter-escaped
    (("Smith, Team",), {"ben", "dora"}),        # a comma must not end the RDN
    ((ODD_GROUP, "Other"), {"anna", "ben", "cara"}),
    (("*",), set()),
    (("Other)(uid=*",), set()),
    (("Other,ou=groups,dc=hauspost,dc=test)(|(uid=*",), set()),
])
def test_member_of_filter_from_allowed_group_names_matches_literally(
    memberof_slapd: SlapdServer, tmp_path: Path, allowed: tuple[str, ...], expected: set[str]
) -> None:
    read = LdapSource(member_of_settings(memberof_slapd, tmp_path, *allowed)).read()

    assert read.problems == ()
    assert read.complete is True
    assert {e.localpart for e in read.employees} == expected


@pytest.fixture(scope="module")
def tls_slapd(tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[SlapdVariant, TlsFiles, Path]]:
    """slapd with a certificate for 127.0.0.1 from a throw-away CA: LDAPS and StartTLS."""
    work = tmp_path_factory.mktemp("slapd-tls")
    files = make_tls_files(work / "tls")
    server = start_slapd_variant(work / "slapd", people_ldif(make_people(3)), tls=files)
    password_file = work / "bind_password"
    password_file.write_text(ADMIN_PASSWORD, encoding="utf-8")
    yield server, files, password_file
    server.stop()


def tls_settings(uri: str, password_file: Path, ca_file: Path | None, *,
                 start_tls: bool = False, validate_cert: bool = True) -> LdapSettings:
    return LdapSettings(uri=uri, base_dn=PEOPLE_DN, bind_dn=ADMIN_DN,
                        bind_password_file=password_file, start_tls=start_tls,
                        validate_cert=validate_cert,
                        source=LdapSourceOptions(ca_file=ca_file, group_mode="none"))


@pytest.mark.parametrize("mode", ["ldaps", "start_tls"])
def test_tls_with_the_configured_ca_reads_everyone(
    tls_slapd: tuple[SlapdVariant, TlsFiles, Path], mode: str
) -> None:
    server, files, password_file = tls_slapd
    uri = server.ldaps_uri if mode == "ldaps" else server.uri
    settings = tls_settings(uri, password_file, files.ca_file, start_tls=mode == "start_tls")

    read = LdapSource(settings).read()

    assert read.complete is True
    assert {e.localpart for e in read.employees} == {"emp00000", "emp00001", "emp00002"}


def test_ldaps_refuses_a_certificate_from_an_unknown_ca(
    tls_slapd: tuple[SlapdVariant, TlsFiles, Path]
) -> None:
    server, _, password_file = tls_slapd

    with pytest.raises(DirectoryUnavailableError) as caught:
        LdapSource(tls_settings(server.ldaps_uri, password_file, None)).read()

    message = str(caught.value)
    assert message.startswith(f"cannot connect to LDAP server {server.ldaps_uri} as {ADMIN_DN}:")
    assert "CERTIFICATE_VERIFY_FAILED" in message


def test_start_tls_refuses_a_certificate_from_an_unknown_ca(
    tls_slapd: tuple[SlapdVariant, TlsFiles, Path]
) -> None:
    server, _, password_file = tls_slapd

    with pytest.raises(DirectoryUnavailableError) as caught:
        LdapSource(tls_settings(server.uri, password_file, None, start_tls=True)).read()

    message = str(caught.value)
    assert message.startswith(f"StartTLS with {server.uri} failed:")
    assert "CERTIFICATE_VERIFY_FAILED" in message


def test_validate_cert_false_is_an_explicit_opt_out(
    tls_slapd: tuple[SlapdVariant, TlsFiles, Path]
) -> None:
    server, _, password_file = tls_slapd
    settings = tls_settings(server.ldaps_uri, password_file, None, validate_cert=False)

    assert len(LdapSource(settings).read().employees) == 3


def test_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls", host="127.0.0.2")
    server = start_slapd_variant(tmp_path / "slapd", tls=files)
    try:
        password_file = tmp_path / "bind_password"
        password_file.write_text(ADMIN_PASSWORD, encoding="utf-8")
        with pytest.raises(DirectoryUnavailableError) as caught:
            LdapSource(tls_settings(server.ldaps_uri, password_file, files.ca_file)).read()
    finally:
        server.stop()

    assert "doesn't match any name in ['127.0.0.1']" in str(caught.value)
