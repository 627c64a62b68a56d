"""Directory logins -> Matrix localparts.

Lower-casing is the only change made: a login with any other character outside the
allowed set is reported, never transliterated, because a silently mangled login
("müller" -> "mller") could collide with another person's account and would not match
what the employee types at the LDAP login.
"""

from __future__ import annotations

import re

#: The historical Matrix localpart set (spec "user_id_char" without "+"): "+" is newer in
#: the spec, and a login with "+" would not survive every client and bridge.
ALLOWED = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._=-/")
#: Synapse refuses user IDs longer than this (synapse.api.constants.MAX_USERID_LENGTH).
MAX_USER_ID_LENGTH = 255

_ALL_DIGITS = re.compile(r"[0-9]+")


class InvalidLocalpartError(ValueError):
    """The login cannot become a Matrix localpart; `str()` says why."""


def normalise_localpart(login: str, server_name: str | None = None) -> str:
    """Return the Matrix localpart for a directory login, or raise `InvalidLocalpartError`.

    With `server_name`, also checks that `@localpart:server_name` fits Synapse's limit.
    """
    value = login.strip().lower()
    if not value:
        raise InvalidLocalpartError("login is empty")
    bad = sorted({c for c in value if c not in ALLOWED})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise InvalidLocalpartError(
            f"login {login!r} contains characters not allowed in a Matrix ID: {shown} "
            "(allowed: a-z 0-9 . _ = - /)"
        )
    if value.startswith("_"):
        # Synapse refuses to register "_…" (reserved for application services / bridges).
        raise InvalidLocalpartError(f"login {login!r} starts with '_', which Synapse reserves")
    if _ALL_DIGITS.fullmatch(value):
        # Synapse reserves all-digit localparts for guest users and refuses to create them.
        raise InvalidLocalpartError(
            f"login {login!r} is all digits, which Synapse reserves for guests"
        )
    if server_name is not None and len(f"@{value}:{server_name}") > MAX_USER_ID_LENGTH:
        raise InvalidLocalpartError(
            f"login {login!r} is too long: the Matrix ID would exceed {MAX_USER_ID_LENGTH} "
            "characters"
        )
    return value
