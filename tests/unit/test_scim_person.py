"""How a SCIM User maps to a person: localpart, employee id, display name, e-mail."""

from __future__ import annotations

from typing import Any

import pytest
from scim2_models import InvalidValueException

from provisioner.directory.scim_person import (
    ENTERPRISE_USER,
    ScimPerson,
    employee_id_for,
    localpart_of,
    person_of,
)


@pytest.mark.parametrize(("user_name", "localpart"), [
    ("alice", "alice"),
    ("Alice.Smith@Example.COM", "alice.smith"),
    ("  bob_1 ", "bob_1"),
    ("a+b=c/d-e", "a+b=c/d-e"),
])
def test_localpart_from_user_name(user_name: str, localpart: str) -> None:
    assert localpart_of(user_name) == localpart


@pytest.mark.parametrize("user_name", ["", "@example.com", "alice smith", "älice", "bob!",
                                       "x:y", "a\u0000b"])
def test_user_names_that_give_no_valid_localpart_are_400(user_name: str) -> None:
    with pytest.raises(InvalidValueException) as info:
        localpart_of(user_name)
    assert info.value.status == 400


@pytest.mark.parametrize(("user", "expected"), [
    ({"userName": "u", "externalId": "E1", ENTERPRISE_USER: {"employeeNumber": "77"}}, "E1"),
    ({"userName": "u", ENTERPRISE_USER: {"employeeNumber": "77"}}, "77"),
    ({"userName": "u", "externalId": "  "}, "scim:abc"),
    ({"userName": "u"}, "scim:abc"),
])
def test_employee_id_precedence(user: dict[str, Any], expected: str) -> None:
    assert employee_id_for(user, "abc") == expected


@pytest.mark.parametrize(("user", "display_name"), [
    ({"userName": "u", "displayName": "Dee", "name": {"formatted": "F"}}, "Dee"),
    ({"userName": "u", "name": {"formatted": "Formatted F", "givenName": "G"}}, "Formatted F"),
    ({"userName": "u", "name": {"givenName": "Gina", "familyName": "Fox"}}, "Gina Fox"),
    ({"userName": "u", "name": {"familyName": "Fox"}}, "Fox"),
    ({"userName": "u", "displayName": "   "}, "u"),
])
def test_display_name_rules(user: dict[str, Any], display_name: str) -> None:
    assert person_of(user, employee_id="E").display_name == display_name


@pytest.mark.parametrize(("emails", "email"), [
    ([{"value": "a@x"}, {"value": "b@x", "primary": True}], "b@x"),
    ([{"value": "a@x"}, {"value": "b@x"}], "a@x"),
    ([{"value": ""}, {"value": "c@x"}], "c@x"),
    ([], None),
])
def test_email_prefers_the_primary(emails: list[dict[str, Any]], email: str | None) -> None:
    assert person_of({"userName": "u", "emails": emails}, employee_id="E").email == email


def test_active_defaults_to_true_and_false_means_inactive() -> None:
    assert person_of({"userName": "u"}, employee_id="E") == ScimPerson("E", "u", "u", None, True)
    assert person_of({"userName": "u", "active": False}, employee_id="E").active is False


def test_missing_user_name_is_400() -> None:
    with pytest.raises(InvalidValueException):
        person_of({"displayName": "Nobody"}, employee_id="E")


@pytest.mark.parametrize(("value", "language"), [
    ("de-DE", "de"), ("en-US, de;q=0.5", "en"), ("", None), (42, None), ("!!", None)])
def test_preferred_language_is_a_language_code_or_nothing(value: object,
                                                          language: str | None) -> None:
    user = {"userName": "u", "preferredLanguage": value}
    assert person_of(user, employee_id="E").language == language
