"""Read employees from LDAP (OpenLDAP inetOrgPerson or Active Directory) with ldap3.

Only a failed connection or bind raises (`DirectoryUnavailableError`): then nothing was
read at all. A search that fails part-way returns what was read with `complete=False`,
so the planner creates and updates but never deactivates on a partial picture.

Every value that goes into a filter is escaped with `escape_filter_chars`, every value
that goes into a DN with `escape_rdn`; filters and DNs from the config are the admin's.
"""

from __future__ import annotations

import logging
import math
import ssl
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

import ldap3
from ldap3.core.exceptions import LDAPException
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn

from provisioner.directory.duplicates import reject_duplicates
from provisioner.directory.errors import DirectoryUnavailableError
from provisioner.directory.ldap_mapping import (
    AttributeMap,
    RawEntry,
    dn_key,
    map_entries,
    rdn_value,
)
from provisioner.employee import DirectoryRead, SourceProblem
from provisioner.settings import LdapSettings

logger = logging.getLogger(__name__)

_PAGED_RESULTS_OID = "1.2.840.113556.1.4.319"
#: AD's LDAP_MATCHING_RULE_IN_CHAIN: memberOf through nested groups.
_AD_IN_CHAIN = "1.2.840.113556.1.4.1941"


class _SearchFailedError(Exception):
    pass


def _close(conn: ldap3.Connection) -> None:
    # After a failed open or TLS handshake the socket is gone and unbind itself raises;
    # closing must never hide the error that matters.
    try:
        conn.unbind()
    except LDAPException as exc:
        logger.debug("LDAP unbind failed: %s", exc)


def build_server(settings: LdapSettings) -> ldap3.Server:
    """The ldap3 Server with the TLS settings; certificates are checked unless switched off."""
    use_ssl = settings.uri.lower().startswith("ldaps://")
    if use_ssl and settings.start_tls:
        raise DirectoryUnavailableError(
            f"ldap.start_tls is set but {settings.uri} is already LDAPS; use one of them"
        )
    opts = settings.source
    tls = None
    if use_ssl or settings.start_tls:
        # ldap3's Tls defaults to CERT_NONE; a directory password must not go to anyone.
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED if settings.validate_cert else ssl.CERT_NONE,
            ca_certs_file=str(opts.ca_file) if opts.ca_file else None,
        )
    return ldap3.Server(settings.uri, use_ssl=use_ssl, tls=tls, get_info=ldap3.NONE,
                        connect_timeout=opts.connect_timeout)


def read_bind_password(settings: LdapSettings) -> str | None:
    if settings.bind_dn is None:
        return None
    path = settings.bind_password_file
    if path is None:
        raise DirectoryUnavailableError("ldap.bind_password_file is required with bind_dn")
    try:
        password = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise DirectoryUnavailableError(
            f"cannot read the LDAP bind password file {path}: {exc}"
        ) from None
    if not password:
        # A DN with an empty password is an "unauthenticated bind" that many servers
        # accept as anonymous: it would hide a missing secret.
        raise DirectoryUnavailableError(f"the LDAP bind password file {path} is empty")
    return password


def member_of_filter(settings: LdapSettings) -> str:
    """`(|(memberOf=<group DN>)…)` for the allowed groups, or "" when all are allowed."""
    opts = settings.source
    if not opts.allowed_groups:
        return ""
    groups_base = opts.groups_base_dn or settings.base_dn
    attribute = opts.member_of_attribute
    if settings.active_directory:
        attribute = f"{attribute}:{_AD_IN_CHAIN}:"
    parts = [
        f"({attribute}="
        f"{escape_filter_chars(f'{opts.group_name_attribute}={escape_rdn(name)},{groups_base}')})"
        for name in opts.allowed_groups
    ]
    return parts[0] if len(parts) == 1 else "(|" + "".join(parts) + ")"


def allowed_groups_filter(settings: LdapSettings) -> str:
    """The group search restricted to the allowed group names (escaped), for groupOfNames."""
    opts = settings.source
    names = [f"({opts.group_name_attribute}={escape_filter_chars(name)})"
             for name in opts.allowed_groups]
    either = names[0] if len(names) == 1 else "(|" + "".join(names) + ")"
    return f"(&{opts.group_filter}{either})"


def user_filter(settings: LdapSettings) -> str:
    extra = member_of_filter(settings) if settings.source.group_mode == "member_of" else ""
    return f"(&{settings.user_filter}{extra})" if extra else settings.user_filter


#: AD's LDAP_MATCHING_RULE_BIT_AND on userAccountControl: the ACCOUNTDISABLE bit is set.
_AD_DISABLED = "(userAccountControl:1.2.840.113556.1.4.803:=2)"


def login_filter(settings: LdapSettings) -> str:
    """A filter for the LDAP *login* module that admits only people this source would read as
    active employees: `user_filter`, an employee id, the allowed groups (member_of mode) and
    not disabled. `hauspost init` renders it from the same `ldap:` settings the sync reads.

    matrix-synapse-ldap3 creates an account at the first successful login, so a login
    filter wider than the directory read would let a disabled person or a non-member of
    `allowed_groups` get an account the provisioner never planned. groupOfNames membership
    cannot be expressed on the user entry; with `allowed_groups` in that mode, only the
    provisioner's deactivation protects.
    """
    opts = settings.source
    # An entry without an employee id is skipped by the sync: it must not log in either.
    parts = [settings.user_filter, f"({opts.employee_id_attribute}=*)"]
    if opts.group_mode == "member_of":
        parts.append(member_of_filter(settings))
    if settings.active_directory:
        parts.append(f"(!{_AD_DISABLED})")
    elif opts.disabled_attribute:
        attribute = opts.disabled_attribute
        if opts.disabled_values:
            parts.extend(f"(!({attribute}={escape_filter_chars(v)}))"
                         for v in opts.disabled_values)
        else:
            parts.append(f"(!({attribute}=*))")
    parts = [p for p in parts if p]
    return parts[0] if len(parts) == 1 else "(&" + "".join(parts) + ")"


class LdapSource:
    """One read of the directory per `read()` call; a fresh connection each time."""

    def __init__(self, settings: LdapSettings, *, server_name: str | None = None) -> None:
        self.settings = settings
        self.server_name = server_name
        #: Search requests the last read's employee search needed (one per page).
        self.last_page_count = 0
        self.amap = AttributeMap.from_options(
            localpart=settings.localpart_attribute,
            display_name=settings.display_name_attribute,
            email=settings.email_attribute,
            active_directory=settings.active_directory,
            options=settings.source,
        )

    @property
    def name(self) -> str:
        return f"ldap:{self.settings.uri}/{self.settings.base_dn}"

    def connect(self) -> ldap3.Connection:
        """Open, secure and bind; raises `DirectoryUnavailableError` naming what failed."""
        s = self.settings
        server = build_server(s)
        password = read_bind_password(s)
        conn = ldap3.Connection(
            server, user=s.bind_dn, password=password, read_only=True,
            raise_exceptions=False, auto_referrals=False,
            # Values are decoded from raw_attributes in ldap_mapping; ldap3's own formatting
            # of every value was a third of a 10,000-entry read.
            check_names=False,
            # ldap3 packs this into a struct for SO_RCVTIMEO: whole seconds only.
            receive_timeout=math.ceil(s.source.receive_timeout),
        )
        who = s.bind_dn or "anonymous"
        try:
            try:
                conn.open()
            except LDAPException as exc:
                raise DirectoryUnavailableError(
                    f"cannot connect to LDAP server {s.uri} as {who}: {exc}"
                ) from None
            if s.start_tls:
                # Never fall back to plain text: the bind below sends the password.
                try:
                    started = conn.start_tls()
                except LDAPException as exc:
                    raise DirectoryUnavailableError(
                        f"StartTLS with {s.uri} failed: {exc}") from None
                if not started:
                    raise DirectoryUnavailableError(
                        f"StartTLS with {s.uri} failed: {conn.result.get('description')}")
            try:
                bound = conn.bind()
            except LDAPException as exc:
                raise DirectoryUnavailableError(
                    f"LDAP bind to {s.uri} as {who} failed: {exc}") from None
            if not bound:
                raise DirectoryUnavailableError(
                    f"LDAP bind to {s.uri} as {who} failed: {conn.result.get('description')}")
        except DirectoryUnavailableError:
            _close(conn)
            raise
        return conn

    def _paged(self, conn: ldap3.Connection, base: str, search_filter: str,
               attributes: list[str], *, count_pages: bool = False) -> Iterator[RawEntry]:
        cookie: bytes | None = None
        while True:
            if count_pages:
                self.last_page_count += 1
            try:
                conn.search(base, search_filter, ldap3.SUBTREE, attributes=attributes,
                            paged_size=self.settings.source.paged_size, paged_cookie=cookie,
                            paged_criticality=True)
            except LDAPException as exc:
                raise _SearchFailedError(f"{type(exc).__name__}: {exc}") from None
            for item in conn.response or ():
                if item.get("type") == "searchResEntry":
                    yield item
            result: Mapping[str, Any] = conn.result
            if result.get("result") != 0:
                raise _SearchFailedError(
                    f"{result.get('description')} (code {result.get('result')})"
                    + (f": {result['message']}" if result.get("message") else "")
                )
            controls = result.get("controls") or {}
            cookie = controls.get(_PAGED_RESULTS_OID, {}).get("value", {}).get("cookie")
            if not cookie:
                return

    def _read_groups(self, conn: ldap3.Connection,
                     search_filter: str) -> dict[str, frozenset[str]]:
        """member DN key -> group names, from every groupOfNames the filter finds."""
        opts = self.settings.source
        base = opts.groups_base_dn or self.settings.base_dn
        by_member: dict[str, set[str]] = defaultdict(set)
        for group in self._paged(conn, base, search_filter,
                                 [opts.group_name_attribute, opts.group_member_attribute]):
            attrs = {k.lower(): v for k, v in (group.get("raw_attributes") or {}).items()}
            names = attrs.get(opts.group_name_attribute.lower()) or []
            name = (bytes(names[0]).decode("utf-8", errors="replace") if names
                    else rdn_value(group["dn"]))
            for member in attrs.get(opts.group_member_attribute.lower()) or []:
                by_member[dn_key(bytes(member).decode("utf-8", errors="replace"))].add(name)
        return {k: frozenset(v) for k, v in by_member.items()}

    def read(self) -> DirectoryRead:
        """Read every employee; see the module docstring for what raises."""
        s = self.settings
        opts = s.source
        conn = self.connect()
        problems: list[SourceProblem] = []
        complete = True
        raw_entries: list[RawEntry] = []
        groups_by_member: dict[str, frozenset[str]] = {}
        allowed_members: set[str] | None = None
        groups_base = opts.groups_base_dn or s.base_dn
        try:
            if opts.group_mode == "group_of_names":
                stage, where = "group search", groups_base
                groups_by_member = self._read_groups(conn, opts.group_filter)
                if opts.allowed_groups:
                    stage = "allowed-groups search"
                    allowed_members = set(self._read_groups(conn, allowed_groups_filter(s)))
            stage, where = "employee search", s.base_dn
            self.last_page_count = 0
            for entry in self._paged(conn, s.base_dn, user_filter(s), self.amap.attributes(),
                                     count_pages=True):
                raw_entries.append(entry)
        except _SearchFailedError as exc:
            complete = False
            if stage == "employee search":
                message = (f"{stage} failed after {len(raw_entries)} entries: {exc}; the read "
                           "is incomplete, so nobody is deactivated")
            else:
                # Without the groups, group-based access cannot be decided for anyone.
                message = (f"{stage} failed: {exc}; nobody was read, so nobody is "
                           "deactivated")
            problems.append(SourceProblem(f"{s.uri} {where}", message))
        finally:
            _close(conn)

        if allowed_members is not None:
            raw_entries = [e for e in raw_entries if dn_key(e["dn"]) in allowed_members]
        mapped = map_entries(raw_entries, self.amap, groups_by_member, self.server_name)
        employees, duplicate_problems = reject_duplicates(mapped.located, mapped.problems)
        problems.extend(mapped.problems)
        problems.extend(duplicate_problems)
        if mapped.unidentified:
            complete = False
            problems.append(SourceProblem(
                f"{s.uri} {s.base_dn}",
                f"{mapped.unidentified} entries named neither an employee id nor a login; "
                "their accounts cannot be told apart, so nobody is deactivated in this run",
            ))
        logger.info("LDAP %s: %d employees read in %d pages, %d problems, complete=%s",
                    s.uri, len(employees), self.last_page_count, len(problems), complete)
        return DirectoryRead(employees=employees, problems=tuple(problems), complete=complete,
                             source=self.name)
