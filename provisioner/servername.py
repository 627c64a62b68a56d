"""Validation of Matrix server names (spec: appendices, server name grammar)."""

from __future__ import annotations

import re

_HOST = re.compile(
    r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")


def validate_server_name(name: str) -> str | None:
    """Return None if `name` is a usable server name, else what is wrong with it."""
    if not name or len(name) > 230:
        return "expected a DNS name such as example.com (1-230 characters)"
    host, _, port = name.partition(":")
    if name.startswith("["):
        return "IPv6 literals are not supported as a company server name; use a DNS name"
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        return f"invalid port {port!r} in server name {name!r}"
    if _IPV4.match(host):
        return None
    if not _HOST.match(host):
        return f"invalid server name {name!r}: expected a DNS name such as example.com"
    return None
