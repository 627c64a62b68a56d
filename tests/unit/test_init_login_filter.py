"""One definition of "active employee" for the sync and the LDAP login (issue "Only HR makes
accounts"): `init` renders the login filter from hauspost.yaml's `ldap:` settings, and a
re-run keeps every key it was not given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from provisioner.cli import main
from provisioner.directory.ldap_source import login_filter
from provisioner.settings import load_settings

pytestmark = pytest.mark.unit

LDAP_MODULE = "ldap_auth_provider.LdapAuthProviderModule"


def init(data_dir: Path, *extra: str) -> None:
    result = CliRunner().invoke(main, ["init", "--server-name", "muster.example", "-d",
                                       str(data_dir), "--ldap-uri", "ldap://127.0.0.1:1389",
                                       "--ldap-base", "ou=people,dc=muster,dc=example", *extra])
    assert result.exit_code == 0, result.output


def login_module(data_dir: Path) -> dict[str, Any]:
    config = yaml.safe_load((data_dir / "homeserver.yaml").read_text(encoding="utf-8"))
    [entry] = [m for m in config["modules"] if m["module"] == LDAP_MODULE]
    module_config: dict[str, Any] = entry["config"]
    return module_config


def test_init_options_reach_the_sync_settings_and_the_login_filter(tmp_path: Path) -> None:
    init(tmp_path, "--ldap-employee-id-attribute", "employeeID",
         "--ldap-disabled-attribute", "employeeType", "--ldap-disabled-value", "disabled",
         "--ldap-disabled-value", "ausgetreten")

    settings = load_settings(tmp_path)
    assert settings.ldap is not None
    assert settings.ldap.source.employee_id_attribute == "employeeID"
    assert settings.ldap.source.disabled_attribute == "employeeType"
    assert settings.ldap.source.disabled_values == ("disabled", "ausgetreten")
    assert login_module(tmp_path)["filter"] == login_filter(settings.ldap) == (
        "(&(objectClass=inetOrgPerson)(employeeID=*)(!(employeeType=disabled))"
        "(!(employeeType=ausgetreten)))")


def test_a_rerun_keeps_hand_added_keys_and_renders_the_filter_from_them(tmp_path: Path) -> None:
    init(tmp_path, "--ldap-disabled-attribute", "employeeType",
         "--ldap-disabled-value", "disabled")
    path = tmp_path / "hauspost.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["ldap"].update({"group_mode": "member_of", "allowed_groups": ["Belegschaft"],
                        "groups_base_dn": "ou=groups,dc=muster,dc=example"})
    doc["directory"] = {"sources": ["ldap"], "time_zone": "Europe/Berlin",
                        "unexplained": "deactivate"}
    doc["sync"] = {"concurrency": 4}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")

    init(tmp_path, "--port", "8010", "--ldap-user-filter", "(objectClass=person)")

    after = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert after["directory"] == doc["directory"]
    assert after["sync"] == {"concurrency": 4}
    assert {k: after["ldap"][k] for k in ("group_mode", "allowed_groups", "groups_base_dn",
                                          "disabled_attribute", "disabled_values")} == {
        "group_mode": "member_of", "allowed_groups": ["Belegschaft"],
        "groups_base_dn": "ou=groups,dc=muster,dc=example",
        "disabled_attribute": "employeeType", "disabled_values": ["disabled"]}
    assert after["ldap"]["user_filter"] == "(objectClass=person)"
    assert after["homeserver"]["url"] == "http://127.0.0.1:8010"
    settings = load_settings(tmp_path)
    assert settings.ldap is not None
    assert login_module(tmp_path)["filter"] == login_filter(settings.ldap) == (
        "(&(objectClass=person)(employeeNumber=*)"
        "(memberOf=cn=Belegschaft,ou=groups,dc=muster,dc=example)"
        "(!(employeeType=disabled)))")


def test_disabled_values_without_the_attribute_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", "--server-name", "muster.example", "-d",
                                       str(tmp_path), "--ldap-uri", "ldap://127.0.0.1:1389",
                                       "--ldap-base", "dc=x", "--ldap-disabled-value", "off"])
    assert result.exit_code == 3
    assert "--ldap-disabled-value: needs --ldap-disabled-attribute" in result.output
    assert not (tmp_path / "hauspost.yaml").exists()
