"""`ldap:` read options and the `directory:` section: typed values, errors naming file and key."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from provisioner.directory.config import HrColumns, LdapSourceOptions
from provisioner.directory.read import directory_config
from provisioner.errors import ConfigError
from provisioner.settings import Settings, parse_settings


def settings(tmp_path: Path, **sections: Any) -> Settings:
    data = {"server_name": "hauspost.test", "homeserver": {"url": "http://127.0.0.1:8008"},
            **sections}
    return parse_settings(data, tmp_path / "hauspost.yaml")


def error(tmp_path: Path, **sections: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        settings(tmp_path, **sections)
    return str(caught.value)


LDAP = {"uri": "ldap://127.0.0.1:389", "base_dn": "ou=people,dc=x"}


def test_openldap_defaults(tmp_path: Path) -> None:
    s = settings(tmp_path, ldap=LDAP)
    assert s.ldap is not None
    assert s.ldap.localpart_attribute == "uid"
    assert s.ldap.user_filter == "(objectClass=inetOrgPerson)"
    assert s.ldap.source == LdapSourceOptions()
    assert s.directory is None
    config = directory_config(s)
    assert config.sources == ("ldap",)
    assert config.time_zone == ZoneInfo("UTC")


def test_active_directory_defaults(tmp_path: Path) -> None:
    s = settings(tmp_path, ldap={**LDAP, "active_directory": True})
    assert s.ldap is not None
    assert s.ldap.localpart_attribute == "sAMAccountName"
    assert s.ldap.user_filter == "(&(objectCategory=person)(objectClass=user))"
    assert s.ldap.source.employee_id_attribute == "objectGUID"
    assert s.ldap.source.department_attribute == "department"
    assert s.ldap.source.group_mode == "member_of"
    assert s.ldap.source.group_filter == "(objectClass=group)"


def test_all_ldap_read_options(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x", encoding="utf-8")
    s = settings(tmp_path, ldap={
        **LDAP, "employee_id_attribute": "entryUUID", "group_mode": "member_of",
        "groups_base_dn": "ou=groups,dc=x", "allowed_groups": ["Staff"],
        "disabled_attribute": "employeeType", "disabled_values": ["disabled"],
        "paged_size": 250, "ca_file": "ca.pem", "connect_timeout": 5,
        "receive_timeout": 20.5, "group_filter": "(objectClass=groupOfUniqueNames)",
    })
    assert s.ldap is not None
    assert s.ldap.source == LdapSourceOptions(
        employee_id_attribute="entryUUID", group_mode="member_of",
        groups_base_dn="ou=groups,dc=x", allowed_groups=("Staff",),
        disabled_attribute="employeeType", disabled_values=("disabled",), paged_size=250,
        ca_file=tmp_path / "ca.pem", connect_timeout=5.0, receive_timeout=20.5,
        group_filter="(objectClass=groupOfUniqueNames)",
    )


@pytest.mark.parametrize(("extra", "message"), [
    ({"group_mode": "nested"},
     "ldap.group_mode: expected one of group_of_names, member_of, none, got 'nested'"),
    ({"paged_size": 0}, "ldap.paged_size: must be at least 1, got 0"),
    ({"paged_size": True}, "ldap.paged_size: expected an integer, got a boolean"),
    ({"user_filter": "(&(uid=a)"},
     "ldap.user_filter: is not a valid LDAP filter: '(&(uid=a)'"),
    ({"group_filter": "objectClass=group"},
     "ldap.group_filter: is not a valid LDAP filter: 'objectClass=group'"),
    ({"ca_file": "missing.pem"}, "ldap.ca_file: file not found"),
    ({"connect_timeout": 0}, "ldap.connect_timeout: must be a positive number of seconds"),
    ({"disabled_values": ["x"]},
     "ldap.disabled_values: needs disabled_attribute (an attribute name)"),
    ({"allowed_groups": ["ok", " "]}, "ldap.allowed_groups[1]: must not be empty"),
    ({"page_size": 10}, "ldap.page_size: unknown key"),
])
def test_bad_ldap_read_options_name_the_key(tmp_path: Path, extra: dict[str, Any],
                                            message: str) -> None:
    assert f"{tmp_path / 'hauspost.yaml'}: {message}" in error(tmp_path, ldap={**LDAP, **extra})


HR = {"path": "hr/employees.csv",
      "columns": {"employee_id": "Personalnummer", "status": "Status",
                  "leave_date": "Austrittsdatum"}}


def test_ldap_and_hr_csv(tmp_path: Path) -> None:
    s = settings(tmp_path, ldap=LDAP, directory={
        "sources": ["ldap", "hr_csv"], "time_zone": "Europe/Berlin", "ldap_only": "exclude",
        "hr_csv": {**HR, "delimiter": ";",
                   "status_values": {"active": ["Aktiv", ""], "inactive": ["Ausgetreten"]}},
    })
    config = directory_config(s)
    assert config.sources == ("ldap", "hr_csv")
    assert config.time_zone == ZoneInfo("Europe/Berlin")
    assert config.ldap_only == "exclude"
    assert config.hr_csv is not None
    assert config.hr_csv.path == tmp_path / "hr/employees.csv"
    assert config.hr_csv.delimiter == ";"
    assert config.hr_csv.columns == HrColumns(employee_id="Personalnummer", status="Status",
                                              leave_date="Austrittsdatum")
    assert config.hr_csv.active_values == {"aktiv", ""}
    assert config.hr_csv.inactive_values == {"ausgetreten"}
    assert config.hr_csv.identity_source is False


def test_hr_csv_alone_needs_login_and_name_columns(tmp_path: Path) -> None:
    message = error(tmp_path, directory={"sources": ["hr_csv"], "time_zone": "Europe/Berlin",
                                         "hr_csv": HR})
    assert message.endswith("directory.hr_csv.columns.localpart: is required when the HR file "
                            "is the only source (the column holding it)")


@pytest.mark.parametrize(("directory", "message"), [
    ({"sources": ["ldap", "hr_csv"], "hr_csv": HR},
     "directory.time_zone: is required (a string)"),
    ({"sources": ["ldap", "hr_csv"], "time_zone": "Europe/Berln", "hr_csv": HR},
     "directory.time_zone: unknown time zone 'Europe/Berln' (expected an IANA name such as "
     "'Europe/Berlin')"),
    ({"sources": ["ldap", "workday"]}, "directory.sources[1]: expected 'ldap', 'hr_csv' or "
                                       "'scim', got 'workday'"),
    ({"sources": ["ldap"], "hr_csv": HR},
     "directory.hr_csv: is configured but 'hr_csv' is not listed in sources"),
    ({"sources": ["ldap", "hr_csv"], "time_zone": "UTC"},
     "directory.hr_csv: is required when sources lists 'hr_csv' (a mapping)"),
    ({"sources": ["ldap", "hr_csv"], "time_zone": "UTC",
      "hr_csv": {**HR, "columns": {"employee_id": "Nr"}}},
     "directory.hr_csv.columns.status: map status or leave_date (or both)"),
    ({"sources": ["ldap", "hr_csv"], "time_zone": "UTC",
      "hr_csv": {**HR, "columns": {"status": "S"}}},
     "directory.hr_csv.columns.employee_id: is required (the column holding the employee id)"),
    ({"sources": ["ldap", "hr_csv"], "time_zone": "UTC",
      "hr_csv": {**HR, "columns": {"employee_id": "Nr", "status": "S", "login": "L"}}},
     "directory.hr_csv.columns.login: unknown key"),
    ({"sources": ["ldap", "hr_csv"], "time_zone": "UTC",
      "hr_csv": {**HR, "columns": {"employee_id": "Nr", "status": "Nr"}}},
     "directory.hr_csv.columns.employee_id: the same column is mapped twice: ['Nr']"),
    ({"sources": ["ldap", "hr_csv"], "time_zone": "UTC",
      "hr_csv": {**HR, "delimiter": "|"}},
     "directory.hr_csv.delimiter: expected 'auto', ';' or ',', got '|'"),
    ({"sources": ["ldap", "hr_csv"], "time_zone": "UTC",
      "hr_csv": {**HR, "status_values": {"active": ["left"]}}},
     "directory.hr_csv.status_values.inactive: values listed as both active and inactive: "
     "['left']"),
    ({"ldap_only": "drop"}, "directory.ldap_only: expected 'include' or 'exclude', got 'drop'"),
])
def test_bad_directory_section_names_the_key(tmp_path: Path, directory: dict[str, Any],
                                             message: str) -> None:
    assert message in error(tmp_path, ldap=LDAP, directory=directory)


def test_ldap_source_without_ldap_section(tmp_path: Path) -> None:
    assert error(tmp_path, directory={"sources": ["ldap"]}).endswith(
        "directory.sources: lists 'ldap' but there is no top-level `ldap:` section")


def test_no_source_at_all(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no directory source configured"):
        directory_config(settings(tmp_path))
