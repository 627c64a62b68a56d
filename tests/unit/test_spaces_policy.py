"""The space module's decision, as a table: only state, or the provisioner, in a space."""

from __future__ import annotations

import pytest

from synapse_modules.spaces import SPACE_IS_A_SIGNPOST, is_space, refuse_timeline_in_space

pytestmark = pytest.mark.unit

SERVICE = frozenset({"@hauspost:x.test"})


@pytest.mark.parametrize(("is_state", "in_space", "sender", "refused"), [
    (False, True, "@anna:x.test", True),       # a message or reaction in a space
    (False, True, "@hauspost:x.test", False),  # the provisioner
    (True, True, "@anna:x.test", False),       # state: name, avatar, m.space.child …
    (False, False, "@anna:x.test", False),     # a normal room
])
def test_refuse_timeline_in_space(is_state: bool, in_space: bool, sender: str,
                                  refused: bool) -> None:
    refusal = refuse_timeline_in_space(is_state=is_state, in_space=in_space, sender=sender,
                                       provisioners=SERVICE)
    assert (refusal.message if refusal else None) == (SPACE_IS_A_SIGNPOST if refused else None)


@pytest.mark.parametrize(("content", "space"), [
    ({"type": "m.space", "room_version": "12"}, True),
    ({"room_version": "12"}, False),
    ({"type": "m.space.x"}, False),
    (None, False),
])
def test_is_space(content: object, space: bool) -> None:
    assert is_space(content) is space
