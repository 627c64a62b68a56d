"""Pseudonyms and identifier replacement (pure)."""

from __future__ import annotations

from provisioner.gdpr.config import parse_data_protection
from provisioner.gdpr.pseudonym import Identifiers, Replacer, pseudonym
from provisioner.validation import Section

IDS = Identifiers(employee_id="E1042", user_id="@li:corp.test", localpart="li",
                  display_name="Li Wei", email="li.wei@corp.test")


def test_pseudonyms_are_stable_and_keyed() -> None:
    first = pseudonym(b"k" * 32, "E1042")
    assert first == pseudonym(b"k" * 32, "E1042")
    assert first.startswith("erased-") and len(first) == len("erased-") + 20
    assert first != pseudonym(b"k" * 32, "E1043")
    assert first != pseudonym(b"j" * 32, "E1042")


def test_identifiers_are_replaced_whole_never_inside_other_words() -> None:
    r = Replacer(IDS, "P")
    assert r.text("offboarded @li:corp.test (E1042, li.wei@corp.test)") == "offboarded P (P, P)"
    assert r.text("Li Wei left; Linda and Lisa stay; E10420 is somebody else") == \
        "P left; Linda and Lisa stay; E10420 is somebody else"
    assert r.text("@li:corp.testing and oli.wei@corp.test differ") == \
        "@li:corp.testing and oli.wei@corp.test differ"
    assert r.text("li") == "P" and r.text("login li, not lima") == "login li, not lima"
    assert r.value({"employee_id": "E1042", "names": ["Li Wei", "Linda"], "n": 3,
                    "@li:corp.test": True}) == {"employee_id": "P", "names": ["P", "Linda"],
                                                "n": 3, "P": True}
    assert r.contains({"x": ["li"]}) and not r.contains({"x": ["Linda", 1042, "lime"]})


def test_data_protection_section() -> None:
    assert parse_data_protection(None).erase_after_days == 0
    section = Section({"erase_after_days": 180}, file="h.yaml", path="data_protection")
    assert parse_data_protection(section).erase_after_days == 180
