"""Typed, frozen configuration of the directory sources, validated once at the edge.

Two places in `hauspost.yaml` feed it:

- the `ldap:` section (shared with the LDAP login that `hauspost init` configures): the
  extra keys for *reading* the directory are parsed here by `parse_ldap_source_options`
  into `LdapSettings.source` so the connection settings exist only once;
- the `directory:` section (`parse_directory`): which sources to read, the HR export and
  its column mapping, the company's time zone and the combine rule.

Every error names the file, the key path and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ldap3.core.exceptions import LDAPInvalidFilterError
from ldap3.operation.search import parse_filter

from provisioner.errors import ConfigError
from provisioner.validation import Section

GroupMode = Literal["group_of_names", "member_of", "none"]
GROUP_MODES: tuple[GroupMode, ...] = ("group_of_names", "member_of", "none")
SourceName = Literal["ldap", "hr_csv", "scim"]
SOURCE_NAMES: tuple[SourceName, ...] = ("ldap", "hr_csv", "scim")
LdapOnlyRule = Literal["include", "exclude"]
UnexplainedRule = Literal["report", "deactivate"]

#: Roles an HR column can fill, in the order they are documented.
HR_ROLES = ("employee_id", "localpart", "display_name", "email", "department", "location",
            "manager_id", "groups", "status", "leave_date", "language")

DEFAULT_ACTIVE_VALUES = ("active", "aktiv")
DEFAULT_INACTIVE_VALUES = ("inactive", "inaktiv", "left", "ausgetreten")


@dataclass(frozen=True)
class LdapSourceOptions:
    """How to read employees from the directory (keys under `ldap:` besides the login ones).

    The defaults depend on `ldap.active_directory` (see docs/directory-sources.md).
    """

    employee_id_attribute: str = "employeeNumber"
    department_attribute: str = "departmentNumber"
    location_attribute: str = "l"
    manager_attribute: str = "manager"
    #: RFC 2798's preferredLanguage (Accept-Language form); in AD's schema too.
    language_attribute: str = "preferredLanguage"
    group_mode: GroupMode = "group_of_names"
    #: None: the `ldap.base_dn`.
    groups_base_dn: str | None = None
    group_filter: str = "(objectClass=groupOfNames)"
    group_name_attribute: str = "cn"
    group_member_attribute: str = "member"
    member_of_attribute: str = "memberOf"
    #: Only members of one of these groups (by name) are employees; empty: everyone.
    allowed_groups: tuple[str, ...] = ()
    #: OpenLDAP has no standard "disabled" flag: an entry whose `disabled_attribute` holds
    #: one of `disabled_values` (any value, if the list is empty) is INACTIVE.
    disabled_attribute: str | None = None
    disabled_values: tuple[str, ...] = ()
    paged_size: int = 500
    ca_file: Path | None = None
    connect_timeout: float = 10.0
    receive_timeout: float = 60.0


def default_source_options(active_directory: bool) -> LdapSourceOptions:
    """The options an `ldap:` section without any directory-reading key gives."""
    return parse_ldap_source_options(Section({}, file="(defaults)"), Path("."),
                                     active_directory)


def _filter(section: Section, name: str, default: str) -> str:
    value: str = section.str(name, default)
    validate_filter(section, name, value)
    return value


def _positive(section: Section, name: str, default: float) -> float:
    value: float = section.float(name, default)
    if value <= 0:
        raise section.error(name, f"must be a positive number of seconds, got {value}")
    return value


def parse_ldap_source_options(section: Section, base: Path,
                              active_directory: bool) -> LdapSourceOptions:
    """Read the directory-reading keys of the `ldap:` section (the caller calls `done()`)."""
    ad = active_directory
    group_mode = section.str("group_mode", "member_of" if ad else "group_of_names")
    if group_mode not in GROUP_MODES:
        raise section.error("group_mode", f"expected one of {', '.join(GROUP_MODES)}, "
                                          f"got {group_mode!r}")
    disabled_attribute = section.str("disabled_attribute")
    disabled_values = section.str_list("disabled_values")
    if disabled_values and not disabled_attribute:
        raise section.error("disabled_values", "needs disabled_attribute (an attribute name)")
    if ad and disabled_attribute:
        raise section.error("disabled_attribute", "is not used with active_directory: true "
                                                  "(userAccountControl decides)")
    ca_file = section.str("ca_file")
    ca_path: Path | None = None
    if ca_file is not None:
        ca_path = base / ca_file  # an absolute path replaces `base` (pathlib's `/`)
        if not ca_path.is_file():
            raise section.error("ca_file", f"file not found: {ca_path}")
    allowed = section.str_list("allowed_groups")
    for i, name in enumerate(allowed):
        if not name.strip():
            raise section.error(f"allowed_groups[{i}]", "must not be empty")
    return LdapSourceOptions(
        employee_id_attribute=section.str("employee_id_attribute",
                                          "objectGUID" if ad else "employeeNumber"),
        department_attribute=section.str("department_attribute",
                                         "department" if ad else "departmentNumber"),
        location_attribute=section.str("location_attribute", "l"),
        manager_attribute=section.str("manager_attribute", "manager"),
        language_attribute=section.str("language_attribute", "preferredLanguage"),
        group_mode=group_mode,
        groups_base_dn=section.str("groups_base_dn"),
        group_filter=_filter(section, "group_filter",
                             "(objectClass=group)" if ad else "(objectClass=groupOfNames)"),
        group_name_attribute=section.str("group_name_attribute", "cn"),
        group_member_attribute=section.str("group_member_attribute", "member"),
        member_of_attribute=section.str("member_of_attribute", "memberOf"),
        allowed_groups=tuple(allowed),
        disabled_attribute=disabled_attribute,
        disabled_values=tuple(disabled_values),
        paged_size=section.int("paged_size", 500, minimum=1, maximum=100_000),
        ca_file=ca_path,
        connect_timeout=_positive(section, "connect_timeout", 10.0),
        receive_timeout=_positive(section, "receive_timeout", 60.0),
    )


def validate_filter(section: Section, name: str, value: str) -> None:
    """Raise a ConfigError naming `name` unless `value` parses as an LDAP filter."""
    try:
        parse_filter(value, None, False, False, None, False)
    except (LDAPInvalidFilterError, IndexError, ValueError):
        raise section.error(
            name, f"is not a valid LDAP filter: {value!r} (expected e.g. '(objectClass=person)')"
        ) from None


@dataclass(frozen=True)
class HrColumns:
    """Role -> column header in the HR file; None: the file has no such column."""

    employee_id: str
    localpart: str | None = None
    display_name: str | None = None
    email: str | None = None
    department: str | None = None
    location: str | None = None
    manager_id: str | None = None
    groups: str | None = None
    status: str | None = None
    leave_date: str | None = None
    language: str | None = None

    def mapped(self) -> dict[str, str]:
        """role -> header for every mapped role, in documented order."""
        return {role: header for role in HR_ROLES
                if (header := getattr(self, role)) is not None}


@dataclass(frozen=True)
class HrCsvConfig:
    path: Path
    columns: HrColumns
    #: None: detect `;` or `,` from the header line.
    delimiter: str | None = None
    #: Lower-cased status values; "" may be listed to accept an empty cell.
    active_values: frozenset[str] = frozenset(DEFAULT_ACTIVE_VALUES)
    inactive_values: frozenset[str] = frozenset(DEFAULT_INACTIVE_VALUES)
    groups_separator: str = "|"
    #: True when the file is the identity source (no LDAP): login and name are required.
    identity_source: bool = False


@dataclass(frozen=True)
class DirectoryConfig:
    sources: tuple[SourceName, ...]
    time_zone: ZoneInfo
    hr_csv: HrCsvConfig | None = None
    #: With both sources: what to do with an LDAP entry the HR export does not list.
    ldap_only: LdapOnlyRule = "include"
    #: Active Synapse accounts no employee, service account or bot explains: list them in
    #: `plan`/`sync` (report) or deactivate them through the guard (deactivate).
    unexplained: UnexplainedRule = "report"
    file: str = field(default="", compare=False)

    @property
    def uses_ldap(self) -> bool:
        return "ldap" in self.sources

    @property
    def uses_scim(self) -> bool:
        """The people `hauspost serve` received over SCIM (provisioner/directory/scim_source.py)."""
        return "scim" in self.sources


def parse_time_zone(section: Section, name: str, default: str | None) -> ZoneInfo:
    value = section.str(name, default, required=default is None)
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise section.error(
            name, f"unknown time zone {value!r} (expected an IANA name such as 'Europe/Berlin')"
        ) from None


def _status_values(section: Section | None) -> tuple[frozenset[str], frozenset[str]]:
    if section is None:
        return frozenset(DEFAULT_ACTIVE_VALUES), frozenset(DEFAULT_INACTIVE_VALUES)
    active = [v.strip().lower() for v in section.str_list("active",
                                                         list(DEFAULT_ACTIVE_VALUES))]
    inactive = [v.strip().lower() for v in section.str_list("inactive",
                                                           list(DEFAULT_INACTIVE_VALUES))]
    section.done()
    if not active:
        raise section.error("active", "must list at least one value")
    if not inactive:
        raise section.error("inactive", "must list at least one value")
    both = sorted(set(active) & set(inactive))
    if both:
        raise section.error("inactive", f"values listed as both active and inactive: {both}")
    return frozenset(active), frozenset(inactive)


def parse_hr_csv(section: Section, base: Path, *, identity_source: bool) -> HrCsvConfig:
    raw_path = section.str("path", required=True)
    path = base / raw_path  # an absolute path replaces `base` (pathlib's `/`)
    delimiter = section.str("delimiter", "auto")
    if delimiter not in ("auto", ";", ","):
        raise section.error("delimiter", f"expected 'auto', ';' or ',', got {delimiter!r}")

    cols = section.section("columns", required=True)
    assert cols is not None  # noqa: S101 - required=True guarantees it (for mypy)
    mapping = {role: cols.str(role) for role in HR_ROLES}
    cols.done()
    if mapping["employee_id"] is None:
        raise cols.error("employee_id", "is required (the column holding the employee id)")
    if identity_source:
        for role in ("localpart", "display_name"):
            if mapping[role] is None:
                raise cols.error(role, "is required when the HR file is the only source "
                                       "(the column holding it)")
    elif mapping["status"] is None and mapping["leave_date"] is None:
        raise cols.error("status", "map status or leave_date (or both): with LDAP as the "
                                   "identity source the HR file only provides those")
    headers = [h for h in mapping.values() if h is not None]
    repeated = sorted({h for h in headers if headers.count(h) > 1})
    if repeated:
        raise cols.error("employee_id", f"the same column is mapped twice: {repeated}")

    active, inactive = _status_values(section.section("status_values"))
    separator = section.str("groups_separator", "|")
    section.done()
    return HrCsvConfig(
        path=path,
        columns=HrColumns(**mapping),
        delimiter=None if delimiter == "auto" else delimiter,
        active_values=active,
        inactive_values=inactive,
        groups_separator=separator,
        identity_source=identity_source,
    )


def check_scim_source(directory: DirectoryConfig | None, *, scim_enabled: bool) -> None:
    """`scim` as a source reads what `hauspost serve` received: without its SCIM endpoint
    the source would always be empty, and everyone it should list would look gone."""
    if directory is not None and directory.uses_scim and not scim_enabled:
        raise ConfigError("lists 'scim' but the SCIM endpoint of `hauspost serve` is off "
                          "(service.scim.enabled: false); enable it or drop 'scim'",
                          file=directory.file, key="directory.sources")


def parse_directory(section: Section, base: Path, *, has_ldap: bool) -> DirectoryConfig:
    """Parse the `directory:` section; `has_ldap` says whether `ldap:` is configured."""
    sources = section.str_list("sources", ["ldap"] if has_ldap else None)
    if not sources:
        raise section.error("sources", "is required: a list of 'ldap', 'hr_csv' and/or 'scim'")
    for i, name in enumerate(sources):
        if name not in SOURCE_NAMES:
            raise section.error(f"sources[{i}]",
                                f"expected 'ldap', 'hr_csv' or 'scim', got {name!r}")
    if len(set(sources)) != len(sources):
        raise section.error("sources", f"lists a source twice: {sources}")
    if "ldap" in sources and not has_ldap:
        raise section.error("sources", "lists 'ldap' but there is no top-level `ldap:` section")

    hr_section = section.section("hr_csv")
    hr: HrCsvConfig | None = None
    if "hr_csv" in sources:
        if hr_section is None:
            raise section.error("hr_csv", "is required when sources lists 'hr_csv' (a mapping)")
        hr = parse_hr_csv(hr_section, base, identity_source="ldap" not in sources)
    elif hr_section is not None:
        raise section.error("hr_csv", "is configured but 'hr_csv' is not listed in sources")

    # A leave date means nothing without the company's time zone, so it must be stated.
    time_zone = parse_time_zone(section, "time_zone", None if hr is not None else "UTC")
    ldap_only = section.str("ldap_only", "include")
    if ldap_only not in ("include", "exclude"):
        raise section.error("ldap_only", f"expected 'include' or 'exclude', got {ldap_only!r}")
    unexplained = section.str("unexplained", "report")
    if unexplained not in ("report", "deactivate"):
        raise section.error("unexplained",
                            f"expected 'report' or 'deactivate', got {unexplained!r}")
    section.done()
    return DirectoryConfig(
        sources=cast(tuple[SourceName, ...], tuple(sources)),  # values checked above
        time_zone=time_zone,
        hr_csv=hr,
        ldap_only=ldap_only,
        unexplained=cast(UnexplainedRule, unexplained),  # checked above
        file=section.file,
    )
