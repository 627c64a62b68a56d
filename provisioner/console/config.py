"""The `console:` section of hauspost.yaml: who may use the web console, and as what.

    console:
      roles:                        # console role -> directory groups that grant it
        hr: [personal]              # people, offboarding, rehire
        comms: [kommunikation]      # announcements and their reach
        it: [it-admins]             # people (read), sync, job queue, access review
        auditor: [datenschutz]      # access review, reach (read only)
      idle_minutes: 30              # a session unused this long ends
      login_attempts: 5             # failed sign-ins per account per 15 min
      login_attempts_per_address: 100  # per client address (an office behind one NAT)
      secure_cookies: auto          # auto: Secure when service.public_url is https://
      trusted_proxies: [127.0.0.1, "::1"]  # addresses/networks whose X-Forwarded-For counts

Nobody without one of these roles gets in. Validated once here; unknown keys are errors.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from provisioner.validation import Section

ROLES = ("hr", "comms", "it", "auditor")


@dataclass(frozen=True)
class ConsoleSettings:
    #: role -> directory groups (compared case-insensitively)
    roles: dict[str, frozenset[str]] = field(default_factory=dict)
    idle_seconds: int = 30 * 60
    login_attempts: int = 5
    login_attempts_per_address: int = 100
    login_window_seconds: int = 15 * 60
    #: None: decided from service.public_url
    secure_cookies: bool | None = None
    trusted_proxies: frozenset[str] = frozenset({"127.0.0.1", "::1"})

    def roles_for(self, groups: list[str] | frozenset[str] | None) -> frozenset[str]:
        have = {g.casefold() for g in groups or ()}
        return frozenset(role for role, wanted in self.roles.items()
                         if any(g.casefold() in have for g in wanted))


def parse_console(section: Section | None) -> ConsoleSettings | None:
    if section is None:
        return None
    enabled = section.bool("enabled", True)
    roles_section = section.section("roles", required=True)
    assert roles_section is not None  # noqa: S101 - required=True guarantees it (for mypy)
    roles: dict[str, frozenset[str]] = {}
    for role in ROLES:
        groups = roles_section.str_list(role)
        if groups:
            roles[role] = frozenset(groups)
    roles_section.done()
    if not roles:
        raise section.error("roles", f"expected at least one of {', '.join(ROLES)} with a "
                                     "list of directory groups")
    idle = section.int("idle_minutes", 30, minimum=1, maximum=24 * 60)
    attempts = section.int("login_attempts", 5, minimum=1, maximum=1000)
    per_address = section.int("login_attempts_per_address", 100, minimum=1, maximum=100_000)
    secure_raw = section.raw("secure_cookies")
    if secure_raw not in (None, "auto", True, False):
        raise section.error("secure_cookies", f"expected auto, true or false, got {secure_raw!r}")
    proxies = section.str_list("trusted_proxies", ["127.0.0.1", "::1"])
    for i, value in enumerate(proxies):
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise section.error(f"trusted_proxies[{i}]",
                                f"expected an IP address or network, got {value!r}") from None
    section.done()
    if not enabled:
        return None
    return ConsoleSettings(roles=roles, idle_seconds=idle * 60, login_attempts=attempts,
                           login_attempts_per_address=per_address,
                           secure_cookies=secure_raw if isinstance(secure_raw, bool) else None,
                           trusted_proxies=frozenset(proxies))
