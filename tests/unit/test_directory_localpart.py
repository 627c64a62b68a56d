"""Directory logins -> Matrix localparts: lower-case, or reported; never silently mangled."""

from __future__ import annotations

import pytest

from provisioner.directory.localpart import InvalidLocalpartError, normalise_localpart


@pytest.mark.parametrize(("login", "expected"), [
    ("anna", "anna"),
    ("JDoe", "jdoe"),
    ("  anna.schmidt  ", "anna.schmidt"),
    ("a_b-c=d/e.f", "a_b-c=d/e.f"),
    ("emp00042", "emp00042"),
    ("0x", "0x"),
])
def test_valid_logins_are_lower_cased_only(login: str, expected: str) -> None:
    assert normalise_localpart(login) == expected


@pytest.mark.parametrize(("login", "message"), [
    ("", "login is empty"),
    ("   ", "login is empty"),
    ("jörg", "login 'jörg' contains characters not allowed in a Matrix ID: 'ö' "
             "(allowed: a-z 0-9 . _ = - /)"),
    ("anna schmidt", "login 'anna schmidt' contains characters not allowed in a Matrix ID: "
                     "' ' (allowed: a-z 0-9 . _ = - /)"),
    ("a@b:c", "login 'a@b:c' contains characters not allowed in a Matrix ID: ':' '@' "
              "(allowed: a-z 0-9 . _ = - /)"),
    ("x+tag", "login 'x+tag' contains characters not allowed in a Matrix ID: '+' "
              "(allowed: a-z 0-9 . _ = - /)"),
    ("_bridge", "login '_bridge' starts with '_', which Synapse reserves"),
    ("12345", "login '12345' is all digits, which Synapse reserves for guests"),
])
def test_invalid_logins_are_reported_with_the_reason(login: str, message: str) -> None:
    with pytest.raises(InvalidLocalpartError) as caught:
        normalise_localpart(login)
    assert str(caught.value) == message


def test_length_is_checked_against_the_full_matrix_id() -> None:
    server = "hauspost.test"
    fits = "a" * (255 - len("@:") - len(server))
    assert normalise_localpart(fits, server) == fits
    with pytest.raises(InvalidLocalpartError, match="would exceed 255 characters"):
        normalise_localpart(fits + "a", server)
