"""A person's preferred language from the directory, as a primary language subtag.

LDAP's `preferredLanguage` (RFC 2798) holds an HTTP Accept-Language value ("de-DE",
"en, de;q=0.8"), SCIM's `preferredLanguage` (RFC 7643) the same form, an HR column often
just "de" or "Deutsch". All of them become the lower-case primary subtag of the most
preferred language ("de", "en", "tr"), or None when the value says nothing usable; the
announcements decide which of those they speak and fall back to the company's language.
A bad value is never an error: the person just gets the company's language.
"""

from __future__ import annotations

import re

_SUBTAG = re.compile(r"^([a-z]{2,3})(?:[-_][a-z0-9]{1,8})*$")
_Q = re.compile(r"^q=([01](?:\.\d{0,3})?)$")
#: Language names HR exports use instead of codes.
_NAMES = {"deutsch": "de", "german": "de", "englisch": "en", "english": "en"}


def preferred_language(raw: str | None) -> str | None:
    """The primary subtag of the most preferred language in `raw`, or None."""
    if raw is None:
        return None
    best: tuple[float, int, str] | None = None
    for index, part in enumerate(raw.split(",")):
        tag, *params = (p.strip() for p in part.strip().lower().split(";"))
        quality = 1.0
        for param in params:
            match = _Q.match(param.replace(" ", ""))
            if match is None:
                break
            quality = float(match.group(1))
        else:
            code = _NAMES.get(tag)
            if code is None:
                found = _SUBTAG.match(tag)
                code = found.group(1) if found else None
            if code is not None and quality > 0 and (
                    best is None or (-quality, index) < (-best[0], best[1])):
                best = (quality, index, code)
    return best[2] if best else None
