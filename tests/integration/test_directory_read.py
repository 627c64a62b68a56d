"""hauspost.yaml with `ldap:` + `directory:` -> one combined read from real slapd and an HR file."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import yaml

from provisioner.directory.leave import effective_status
from provisioner.directory.read import directory_config, read_directory
from provisioner.employee import SourceProblem, Status
from provisioner.settings import load_settings
from tests.harness.ldap_seed import SeedPerson, add_groups, add_ou, add_people, unique_name
from tests.harness.slapd_server import ADMIN_DN, ADMIN_PASSWORD, GROUPS_DN, PEOPLE_DN, SlapdServer


def test_ldap_and_hr_export_combined_from_hauspost_yaml(slapd: SlapdServer,
                                                        tmp_path: Path) -> None:
    conn = slapd.connection()
    name = unique_name("d")
    people_dn = add_ou(conn, name, PEOPLE_DN)
    groups_dn = add_ou(conn, name, GROUPS_DN)
    add_people(conn, [
        SeedPerson("anna", "Anna Schmidt", "anna@hauspost.test", "1001"),
        SeedPerson("ben", "Ben Müller", "ben@hauspost.test", "1002", manager_uid="anna"),
        SeedPerson("cara", "Cara Nowak", "cara@hauspost.test", "1003"),
        SeedPerson("dan", "Dan New", "dan@hauspost.test", "1004"),
    ], people_dn)
    add_groups(conn, {"Alle": ["anna", "ben", "cara", "dan"]}, groups_dn, people_dn)
    conn.unbind()

    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "ldap_bind_password").write_text(ADMIN_PASSWORD + "\n",
                                                           encoding="utf-8")
    (tmp_path / "hr").mkdir()
    (tmp_path / "hr" / "personal.csv").write_bytes(b"\xef\xbb\xbf" + (
        b"Personalnummer;Status;Austrittsdatum\n"
        b"1001;aktiv;\n"
        b"1002;aktiv;31.03.2026\n"
        b"1003;ausgetreten;2026-01-31\n"
        b"1005;aktiv;\n"                    # HR only: no LDAP entry, no account
        b"1004;aktiv;30.02.2026\n"          # bad row: dan is left alone
    ))
    (tmp_path / "hauspost.yaml").write_text(yaml.safe_dump({
        "server_name": "hauspost.test",
        "homeserver": {"url": "http://127.0.0.1:8008"},
        "ldap": {"uri": slapd.uri, "base_dn": people_dn, "bind_dn": ADMIN_DN,
                 "bind_password_file": "keys/ldap_bind_password", "groups_base_dn": groups_dn,
                 "paged_size": 2},
        "directory": {
            "sources": ["ldap", "hr_csv"], "time_zone": "Europe/Berlin",
            "hr_csv": {"path": "hr/personal.csv",
                       "columns": {"employee_id": "Personalnummer", "status": "Status",
                                   "leave_date": "Austrittsdatum"}},
        },
    }), encoding="utf-8")

    settings = load_settings(tmp_path)
    read = read_directory(settings)

    assert read.complete is True
    assert read.problems == (SourceProblem(
        "personal.csv:6", "bad date '30.02.2026' in column 'Austrittsdatum' (expected "
        "YYYY-MM-DD or DD.MM.YYYY); skipped", employee_id="1004"),)
    assert read.skipped_employee_ids == {"1004"}
    got = {e.localpart: (e.employee_id, e.display_name, e.manager_id, e.groups, e.status,
                         e.leave_date) for e in read.employees}
    assert got == {
        "anna": ("1001", "Anna Schmidt", None, frozenset({"Alle"}), Status.ACTIVE, None),
        "ben": ("1002", "Ben Müller", "1001", frozenset({"Alle"}), Status.ACTIVE,
                date(2026, 3, 31)),
        "cara": ("1003", "Cara Nowak", None, frozenset({"Alle"}), Status.INACTIVE,
                 date(2026, 1, 31)),
    }
    tz = directory_config(settings).time_zone
    ben = next(e for e in read.employees if e.localpart == "ben")
    # Ben's last day ends at midnight Berlin time (UTC+2 at the end of March).
    assert effective_status(ben, datetime(2026, 3, 31, 21, 59, tzinfo=UTC), tz) is Status.ACTIVE
    assert effective_status(ben, datetime(2026, 3, 31, 22, 0, tzinfo=UTC), tz) is Status.INACTIVE
