"""Pseudonyms and identifier replacement: pure functions, no I/O.

A pseudonym is stable (the same person always gets the same one: HMAC-SHA-256 of the
employee id under the company's own key in keys/pseudonym_key) and reveals nothing without
that key. Replacement works on whole identifiers only (Matrix ID, employee id, e-mail, display name,
display name): "E1042" never eats into "E10420", "Li Wei" never into "Li Weiß"; the login
only where a value is exactly the login.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any

PREFIX = "erased-"


def pseudonym(key: bytes, employee_id: str) -> str:
    digest = hmac.new(key, employee_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PREFIX + digest[:20]


@dataclass(frozen=True)
class Identifiers:
    """What identifies one person in the provisioner's records."""

    employee_id: str
    user_id: str | None = None
    localpart: str | None = None
    display_name: str | None = None
    email: str | None = None

    def exact(self) -> list[str]:
        """Distinctive strings replaced wherever they occur (longest first)."""
        values = {v for v in (self.user_id, self.email, self.employee_id) if v}
        return sorted(values, key=len, reverse=True)

    def words(self) -> list[str]:
        """The display name, replaced as a whole word (sequence) wherever it occurs."""
        values = {v for v in (self.display_name,) if v and len(v) >= 2}
        return sorted(values - set(self.exact()), key=len, reverse=True)

    def whole_values(self) -> set[str]:
        """Replaced only where a value is exactly this (a login like "li" is too short to
        look for inside other text; inside a Matrix ID the Matrix ID is replaced)."""
        return {v for v in (self.localpart,) if v}


class Replacer:
    def __init__(self, ids: Identifiers, replacement: str) -> None:
        self.replacement = replacement
        self._whole = ids.whole_values()
        # Whole identifiers only: E1042 must not eat into E10420, li@x not into oli@x.
        parts = [rf"(?<!\w){re.escape(v)}(?!\w)" for v in ids.exact() + ids.words()]
        self._pattern = re.compile("|".join(parts)) if parts else None

    def text(self, value: str) -> str:
        if value in self._whole:
            return self.replacement
        if self._pattern is None:
            return value
        return self._pattern.sub(self.replacement, value)

    def value(self, value: Any) -> Any:
        """Strings, and JSON made of dicts, lists and strings (keys too)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: self.value(v)
                    for k, v in value.items()}
        return value

    def contains(self, value: Any) -> bool:
        return bool(self.value(value) != value)

