"""LDAP entry mapping with ldap3-shaped fake entries: OpenLDAP and Active Directory.

Active Directory cannot run here, so its attribute handling (objectGUID bytes,
userAccountControl, sAMAccountName, memberOf DNs) is tested on entries shaped exactly
like ldap3's search response: {"dn": …, "raw_attributes": {name: [bytes, …]}}.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from provisioner.directory.config import LdapSourceOptions
from provisioner.directory.errors import DirectoryUnavailableError
from provisioner.directory.ldap_mapping import (
    AttributeMap,
    dn_key,
    guid_from_bytes,
    map_entries,
    rdn_value,
    unescape_dn_value,
)
from provisioner.directory.ldap_source import (
    allowed_groups_filter,
    build_server,
    member_of_filter,
    read_bind_password,
    user_filter,
)
from provisioner.employee import Employee, SourceProblem, Status
from provisioner.settings import LdapSettings

GUID_BYTES = bytes.fromhex("67452301ab89efcd0123456789abcdef")
GUID = "01234567-89ab-cdef-0123-456789abcdef"
AD_BASE = "DC=corp,DC=example"


def entry(dn: str, **attrs: list[Any]) -> dict[str, Any]:
    raw = {name: [v if isinstance(v, bytes) else str(v).encode() for v in values]
           for name, values in attrs.items()}
    return {"dn": dn, "raw_attributes": raw, "type": "searchResEntry"}


def ad_settings(**source: Any) -> LdapSettings:
    return LdapSettings(
        uri="ldaps://dc1.corp.example", base_dn=AD_BASE, active_directory=True,
        user_filter="(&(objectCategory=person)(objectClass=user))",
        localpart_attribute="sAMAccountName", display_name_attribute="displayName",
        source=LdapSourceOptions(employee_id_attribute="objectGUID",
                                 department_attribute="department", group_mode="member_of",
                                 groups_base_dn=f"OU=Groups,{AD_BASE}", **source),
    )


def amap_for(settings: LdapSettings) -> AttributeMap:
    return AttributeMap.from_options(
        localpart=settings.localpart_attribute, display_name=settings.display_name_attribute,
        email=settings.email_attribute, active_directory=settings.active_directory,
        options=settings.source)


AD_MAP = amap_for(ad_settings())


def ad_user(sam: str, guid: bytes, uac: int | str | None,
            **extra: list[Any]) -> dict[str, Any]:
    attrs: dict[str, list[Any]] = {"objectGUID": [guid], "sAMAccountName": [sam],
                                   "displayName": [f"User {sam}"], **extra}
    if uac is not None:
        attrs["userAccountControl"] = [uac]
    return entry(f"CN=User {sam},OU=Staff,{AD_BASE}", **attrs)


def test_object_guid_bytes_become_the_canonical_guid_string() -> None:
    assert guid_from_bytes(GUID_BYTES) == GUID
    with pytest.raises(ValueError, match="objectGUID has 15 bytes, expected 16"):
        guid_from_bytes(GUID_BYTES[:15])


@pytest.mark.parametrize(("uac", "status"), [
    (0x200, Status.ACTIVE),          # NORMAL_ACCOUNT
    (0x202, Status.INACTIVE),        # NORMAL_ACCOUNT | ACCOUNTDISABLE
    (0x10200, Status.ACTIVE),        # NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD
    (0x10202, Status.INACTIVE),
    (0x2, Status.INACTIVE),
])
def test_user_account_control_disabled_bit(uac: int, status: Status) -> None:
    mapped = map_entries([ad_user("JSmith", GUID_BYTES, uac)], AD_MAP)
    assert mapped.problems == ()
    assert [e.status for _, e in mapped.located] == [status]


def test_ad_entry_maps_guid_sam_account_name_and_member_of_groups() -> None:
    boss_guid = bytes(range(16))
    users = [
        ad_user("Boss", boss_guid, 0x200),
        ad_user("JSmith", GUID_BYTES, 0x200, mail=["j.smith@corp.example"],
                department=["Sales"], l=["Berlin"],
                manager=[f"CN=User Boss,OU=Staff,{AD_BASE}".lower()],
                memberOf=[f"CN=Sales,OU=Groups,{AD_BASE}",
                          rf"CN=R\26D \28Berlin\29\2A,OU=Groups,{AD_BASE}",
                          rf"CN=Smith\, Team,OU=Groups,{AD_BASE}"]),
    ]
    mapped = map_entries(users, AD_MAP)
    assert mapped.problems == ()
    assert dict(mapped.located)[f"CN=User JSmith,OU=Staff,{AD_BASE}"] == Employee(
        employee_id=GUID, localpart="jsmith", display_name="User JSmith",
        email="j.smith@corp.example", department="Sales", location="Berlin",
        manager_id="03020100-0504-0706-0809-0a0b0c0d0e0f",
        groups=frozenset({"Sales", "R&D (Berlin)*", "Smith, Team"}),
    )


def test_ad_entry_without_user_account_control_is_skipped_not_guessed_active() -> None:
    mapped = map_entries([ad_user("JSmith", GUID_BYTES, None)], AD_MAP)
    assert mapped.located == ()
    assert mapped.problems == (SourceProblem(
        f"CN=User JSmith,OU=Staff,{AD_BASE}",
        "missing attribute 'userAccountControl' (is it readable by the bind account?); skipped",
        employee_id=GUID, localpart="jsmith"),)
    assert mapped.unidentified == 0


def test_ad_entry_with_a_broken_guid_or_flags_is_reported() -> None:
    mapped = map_entries([ad_user("a", b"\x01\x02", 0x200), ad_user("b", GUID_BYTES, "x")],
                         AD_MAP)
    assert [(p.message, p.employee_id, p.localpart) for p in mapped.problems] == [
        ("objectGUID has 2 bytes, expected 16; skipped", None, "a"),
        ("userAccountControl 'x' is not a number; skipped", GUID, "b"),
    ]


def test_entry_naming_neither_id_nor_login_is_counted_as_unidentified() -> None:
    mapped = map_entries([entry(f"CN=Ghost,{AD_BASE}", displayName=["Ghost"],
                                userAccountControl=[0x200])], AD_MAP)
    assert mapped.unidentified == 1
    assert mapped.problems[0].message == (
        "missing required attribute 'objectGUID' (employee_id); skipped")


OPENLDAP = AttributeMap.from_options(localpart="uid", display_name="cn", email="mail",
                                     active_directory=False, options=LdapSourceOptions())


def test_openldap_entry_with_two_logins_or_bad_utf8_is_reported() -> None:
    mapped = map_entries([
        entry("uid=a,ou=p", uid=["a", "b"], cn=["A"], employeeNumber=["1"]),
        entry("uid=c,ou=p", uid=["c"], cn=[b"\xff"], employeeNumber=["2"]),
    ], OPENLDAP)
    assert [(p.location, p.message) for p in mapped.problems] == [
        ("uid=a,ou=p", "attribute 'uid' (localpart) has 2 values, expected one; skipped"),
        ("uid=c,ou=p", "attribute 'cn' is not valid UTF-8; skipped"),
    ]


def test_group_of_names_membership_matches_dns_regardless_of_case_and_escaping() -> None:
    groups = {dn_key(r"UID=Anna\2CB,OU=People"): frozenset({"Sales"})}
    mapped = map_entries([entry(r"uid=anna\,b,ou=people", uid=["anna"], cn=["Anna"],
                                employeeNumber=["1"])], OPENLDAP, groups)
    assert mapped.located[0][1].groups == frozenset({"Sales"})


@pytest.mark.parametrize(("one", "other"), [
    ("uid=a,ou=People,dc=x", "UID=A, OU=people, DC=X"),
    (r"cn=R\26D,dc=x", "cn=R&D,dc=x"),
    (r"cn=a\,b,dc=x", r"cn=a\2Cb,dc=x"),
    (r"cn=J\C3\B6rg,dc=x", "cn=Jörg,dc=x"),
])
def test_dn_key_ignores_case_spacing_and_escaping_style(one: str, other: str) -> None:
    assert dn_key(one) == dn_key(other)


def test_rdn_value_and_unescaping() -> None:
    assert rdn_value(r"CN=Smith\, Team,OU=G") == "Smith, Team"
    assert unescape_dn_value(r"R\26D \28Berlin\29\5c") == "R&D (Berlin)\\"


def test_member_of_filter_escapes_the_group_name_for_dn_and_filter() -> None:
    settings = ad_settings(allowed_groups=("R&D (Berlin) *", "Smith, Team"))
    assert member_of_filter(settings) == (
        r"(|(memberOf:1.2.840.113556.1.4.1941:=cn=R&D \28Berlin\29 \2a,OU=Groups,DC=corp,"
        r"DC=example)(memberOf:1.2.840.113556.1.4.1941:=cn=Smith\5c, Team,OU=Groups,DC=corp,"
        r"DC=example))")
    assert user_filter(settings) == (
        "(&(&(objectCategory=person)(objectClass=user))" + member_of_filter(settings) + ")")


def test_member_of_filter_without_allowed_groups_leaves_the_user_filter_alone() -> None:
    assert member_of_filter(ad_settings()) == ""
    assert user_filter(ad_settings()) == "(&(objectCategory=person)(objectClass=user))"


def test_allowed_groups_filter_escapes_each_name() -> None:
    settings = LdapSettings(uri="ldap://x", base_dn="dc=x",
                            source=LdapSourceOptions(allowed_groups=("*", "a)(cn=*")))
    assert allowed_groups_filter(settings) == (
        r"(&(objectClass=groupOfNames)(|(cn=\2a)(cn=a\29\28cn=\2a)))")


def test_ldaps_checks_certificates_against_the_configured_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("dummy", encoding="utf-8")
    settings = LdapSettings(uri="ldaps://dc1.corp.example", base_dn="dc=x",
                            source=LdapSourceOptions(ca_file=ca, connect_timeout=3.0))
    server = build_server(settings)
    assert server.ssl is True
    assert server.tls.validate == ssl.CERT_REQUIRED
    assert server.tls.ca_certs_file == str(ca)
    assert server.connect_timeout == 3.0


def test_start_tls_validates_unless_switched_off() -> None:
    on = build_server(LdapSettings(uri="ldap://x", base_dn="dc=x", start_tls=True))
    assert on.ssl is False
    assert on.tls.validate == ssl.CERT_REQUIRED
    off = build_server(LdapSettings(uri="ldap://x", base_dn="dc=x", start_tls=True,
                                    validate_cert=False))
    assert off.tls.validate == ssl.CERT_NONE


def test_start_tls_on_ldaps_is_refused() -> None:
    with pytest.raises(DirectoryUnavailableError, match="already LDAPS"):
        build_server(LdapSettings(uri="ldaps://x", base_dn="dc=x", start_tls=True))


def test_bind_password_file(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    settings = LdapSettings(uri="ldap://x", base_dn="dc=x", bind_dn="cn=svc",
                            bind_password_file=path)
    path.write_text("s3cret\r\n", encoding="utf-8")
    assert read_bind_password(settings) == "s3cret"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DirectoryUnavailableError, match="is empty"):
        read_bind_password(settings)
    path.unlink()
    with pytest.raises(DirectoryUnavailableError, match="cannot read the LDAP bind password"):
        read_bind_password(settings)
    assert read_bind_password(LdapSettings(uri="ldap://x", base_dn="dc=x")) is None


def test_login_filter_admits_only_what_the_source_reads_as_active() -> None:
    from provisioner.directory.ldap_source import login_filter

    # An entry without an employee id is skipped by the sync, so it can't log in either.
    assert login_filter(LdapSettings(uri="ldap://x", base_dn="dc=x")) == (
        "(&(objectClass=inetOrgPerson)(employeeNumber=*))")
    openldap = LdapSettings(uri="ldap://x", base_dn="dc=x", source=LdapSourceOptions(
        disabled_attribute="employeeType", disabled_values=("disabled", "x*)(")))
    assert login_filter(openldap) == (
        r"(&(objectClass=inetOrgPerson)(employeeNumber=*)(!(employeeType=disabled))"
        r"(!(employeeType=x\2a\29\28)))")
    locked = LdapSettings(uri="ldap://x", base_dn="dc=x", source=LdapSourceOptions(
        disabled_attribute="pwdAccountLockedTime"))
    assert login_filter(locked) == (
        "(&(objectClass=inetOrgPerson)(employeeNumber=*)(!(pwdAccountLockedTime=*)))")
    ad = ad_settings(allowed_groups=("Staff",))
    assert login_filter(ad) == (
        "(&(&(objectCategory=person)(objectClass=user))(objectGUID=*)"
        "(memberOf:1.2.840.113556.1.4.1941:=cn=Staff,OU=Groups,DC=corp,DC=example)"
        "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))")
