"""`hauspost init`: what it writes, with which modes, and that it never overwrites secrets."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import yaml

from provisioner.errors import ConfigError
from provisioner.homeserver.data_dir import SECRET_FILES, InitRequest, init_data_dir
from provisioner.homeserver.homeserver_yaml import HomeserverOptions, database_section, render_homeserver_yaml
from provisioner.servername import validate_server_name
from provisioner.settings import LdapSettings, load_settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_hardened_config_and_private_secrets(tmp_path: Path) -> None:
    init_data_dir(InitRequest(server_name="acme.example", data_dir=tmp_path, port=8123))
    config = yaml.safe_load((tmp_path / "homeserver.yaml").read_text())
    assert config["server_name"] == "acme.example"
    assert config["federation_domain_whitelist"] == []
    assert config["trusted_key_servers"] == []
    assert config["listeners"] == [{
        "port": 8123, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": False,
        "x_forwarded": False, "resources": [{"names": ["client"], "compress": False}]}]
    assert config["enable_registration"] is False
    assert config["allow_guest_access"] is False
    assert config["encryption_enabled_by_default_for_room_type"] == "all"
    assert config["enable_authenticated_media"] is True
    assert config["url_preview_enabled"] is False
    assert config["push"]["include_content"] is False
    assert config["database"] == {"name": "sqlite3",
                                  "args": {"database": str(tmp_path / "homeserver.db")}}
    assert {"macaroon_secret_key", "form_secret", "registration_shared_secret"}.isdisjoint(config)
    for name in (*SECRET_FILES, "signing.key"):
        assert mode(tmp_path / "keys" / name) == 0o600, name
    assert mode(tmp_path / "keys") == 0o700
    assert mode(tmp_path / "homeserver.yaml") == 0o600
    well_known = json.loads((tmp_path / "well-known" / "matrix" / "client").read_text())
    assert well_known["io.element.e2ee"] == {"default": True, "force_disable": False,
                                             "secure_backup_required": True}
    element = json.loads((tmp_path / "element" / "config.json").read_text())
    assert element["setting_defaults"]["UIFeature.urlPreviews"] is False
    assert element["setting_defaults"]["UIFeature.locationSharing"] is False
    assert element["default_server_config"]["m.homeserver"] == {
        "base_url": "http://127.0.0.1:8123", "server_name": "acme.example"}
    settings = load_settings(tmp_path)
    assert settings.server_name == "acme.example"
    assert settings.homeserver_url == "http://127.0.0.1:8123"


def test_every_hardening_line_says_why(tmp_path: Path) -> None:
    text = render_homeserver_yaml(HomeserverOptions(server_name="a.example", data_dir=tmp_path))
    for key in ("federation_domain_whitelist", "trusted_key_servers", "enable_registration",
                "allow_guest_access", "enable_3pid_changes", "enable_set_displayname",
                "enable_set_avatar_url", "encryption_enabled_by_default_for_room_type",
                "enable_authenticated_media", "url_preview_enabled",
                "require_auth_for_profile_requests",
                "limit_profile_requests_to_users_who_share_rooms",
                "allow_profile_lookup_over_federation",
                "allow_device_name_lookup_over_federation"):
        line = next(ln for ln in text.splitlines() if ln.startswith(key + ":"))
        assert "  # " in line, f"{key} has no why-comment"
    assert "  include_content: false  # " in text


def test_provisioner_uses_the_local_listener_behind_a_proxy(tmp_path: Path) -> None:
    init_data_dir(InitRequest(server_name="acme.example", data_dir=tmp_path, port=8123,
                              public_baseurl="https://matrix.acme.example"))
    assert load_settings(tmp_path).homeserver_url == "http://127.0.0.1:8123"
    config = yaml.safe_load((tmp_path / "homeserver.yaml").read_text())
    assert config["public_baseurl"] == "https://matrix.acme.example/"
    well_known = json.loads((tmp_path / "well-known" / "matrix" / "client").read_text())
    assert well_known["m.homeserver"] == {"base_url": "https://matrix.acme.example"}


def test_rerun_keeps_keys_and_secrets(tmp_path: Path) -> None:
    init_data_dir(InitRequest(server_name="acme.example", data_dir=tmp_path))
    before = {p.name: p.read_bytes() for p in (tmp_path / "keys").iterdir()}
    result = init_data_dir(InitRequest(server_name="acme.example", data_dir=tmp_path, port=9000))
    after = {p.name: p.read_bytes() for p in (tmp_path / "keys").iterdir()}
    assert before == after
    assert sorted(p.name for p in result.kept) == sorted(before)
    assert tmp_path / "homeserver.yaml" in result.written  # port changed: config rewritten
    assert (tmp_path / "homeserver.yaml.bak").exists()
    assert yaml.safe_load((tmp_path / "homeserver.yaml").read_text())["listeners"][0]["port"] == 9000


def test_postgresql_url(tmp_path: Path) -> None:
    section = yaml.safe_load(database_section(
        "postgresql://synapse:p%40ss@db.internal:5433/synapse", tmp_path))
    assert section["database"] == {
        "name": "psycopg2",
        "args": {"database": "synapse", "host": "db.internal", "port": 5433, "cp_min": 5,
                 "cp_max": 10, "user": "synapse", "password": "p@ss"}}
    with pytest.raises(ConfigError, match="expected a postgresql://"):
        database_section("mysql://x@y/z", tmp_path)
    with pytest.raises(ConfigError, match="names no database"):
        database_section("postgresql://x@y/", tmp_path)


def test_ldap_login_module_reads_password_from_file(tmp_path: Path) -> None:
    pw = tmp_path / "bind.pw"
    pw.write_text("s3cret")
    init_data_dir(InitRequest(
        server_name="acme.example", data_dir=tmp_path / "d",
        ldap=LdapSettings(uri="ldap://127.0.0.1:389", base_dn="ou=people,dc=acme,dc=example",
                          bind_dn="cn=reader,dc=acme,dc=example", bind_password_file=pw)))
    text = (tmp_path / "d" / "homeserver.yaml").read_text()
    assert "s3cret" not in text
    modules = yaml.safe_load(text)["modules"]
    ldap = next(m for m in modules if m["module"] == "ldap_auth_provider.LdapAuthProviderModule")
    assert ldap["config"]["bind_password_file"] == str(pw)
    assert ldap["config"]["attributes"]["uid"] == "uid"
    assert ldap["config"]["mode"] == "search"


@pytest.mark.parametrize(("name", "ok"), [
    ("example.com", True), ("chat.acme-gmbh.de", True), ("localhost", True),
    ("example.com:8448", True), ("10.1.2.3", True),
    ("", False), ("bad name", False), ("under_score.com", False), ("-lead.com", False),
    ("example.com:0", False), ("example.com:abc", False), ("[::1]", False),
])
def test_server_names(name: str, ok: bool) -> None:
    assert (validate_server_name(name) is None) is ok
