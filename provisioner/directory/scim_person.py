"""A SCIM User as Hauspost reads it (pure): who the person is and whether they may work.

- Matrix localpart: `userName`, lower-cased; an e-mail-style userName (Entra ID, Okta)
  gives the part before `@`. It is fixed when the account is created.
- Employee id: `externalId` (the HR id Entra ID and Okta send), else the enterprise
  `employeeNumber`, else `scim:<id>`. Fixed at creation like the account link.
- Display name: `displayName`, else `name.formatted`, else given + family name, else userName.
- E-mail: the primary e-mail, else the first one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from scim2_models import InvalidValueException

from provisioner.directory.language import preferred_language

_LOCALPART = re.compile(r"^[a-z0-9._=/+-]+$")
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@dataclass(frozen=True)
class ScimPerson:
    employee_id: str
    localpart: str
    display_name: str
    email: str | None
    active: bool
    language: str | None = None


def localpart_of(user_name: str) -> str:
    name = user_name.strip().lower()
    if "@" in name:
        name = name.split("@", 1)[0]
    if not name or not _LOCALPART.match(name):
        raise InvalidValueException(
            detail=f"userName {user_name!r} does not give a valid Matrix localpart "
                   "(allowed: a-z 0-9 . _ = - / +, or an e-mail address made of those)")
    return name


def _text(value: Any) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def _display_name(user: dict[str, Any], fallback: str) -> str:
    name = user.get("name") if isinstance(user.get("name"), dict) else {}
    assert isinstance(name, dict)  # noqa: S101 - for mypy
    parts = [p for p in (_text(name.get("givenName")), _text(name.get("familyName"))) if p]
    return (_text(user.get("displayName")) or _text(name.get("formatted"))
            or (" ".join(parts) if parts else None) or fallback)


def _email(user: dict[str, Any]) -> str | None:
    emails = [e for e in user.get("emails") or [] if isinstance(e, dict) and _text(e.get("value"))]
    primary = [e for e in emails if e.get("primary") is True]
    chosen = primary[0] if primary else (emails[0] if emails else None)
    return _text(chosen.get("value")) if chosen is not None else None


def employee_id_for(user: dict[str, Any], scim_id: str) -> str:
    extension = user.get(ENTERPRISE_USER)
    number = _text(extension.get("employeeNumber")) if isinstance(extension, dict) else None
    return _text(user.get("externalId")) or number or f"scim:{scim_id}"


def person_of(user: dict[str, Any], *, employee_id: str) -> ScimPerson:
    """Read a User (its JSON form, by alias); raises InvalidValueException (400) on a bad one."""
    user_name = _text(user.get("userName"))
    if not user_name:
        raise InvalidValueException(detail="userName is required")
    return ScimPerson(employee_id=employee_id, localpart=localpart_of(user_name),
                      display_name=_display_name(user, user_name), email=_email(user),
                      active=user.get("active") is not False,
                      language=preferred_language(_text(user.get("preferredLanguage"))))
