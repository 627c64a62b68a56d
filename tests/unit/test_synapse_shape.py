"""The one check of a Synapse internal's shape that the media gate, the batched accounts
and the company directory rely on."""

from __future__ import annotations

import pytest

from synapse_modules._synapse_shape import method_problem

pytestmark = pytest.mark.unit


class Handler:
    async def register_user(self, localpart: str, password_hash: str | None = None,
                            admin: bool = False) -> str:
        return localpart

    def not_async(self, localpart: str) -> None:
        return None

    not_callable = 5


def test_the_expected_shape_passes_by_prefix_or_exactly() -> None:
    handler = Handler()
    assert method_problem(handler, "register_user", ("localpart", "password_hash")) is None
    assert method_problem(handler, "register_user", ("localpart", "password_hash", "admin"),
                          exact=True) is None


def test_every_way_a_shape_can_change_is_named() -> None:
    handler = Handler()
    assert method_problem(handler, "register_user", ("localpart", "password_hash"),
                          exact=True) == ("Handler.register_user takes (localpart, "
                                          "password_hash, admin) instead of (localpart, "
                                          "password_hash)")
    assert method_problem(handler, "register_user", ("user_id",), label="Registration") == (
        "Registration.register_user takes (localpart) instead of (user_id)")
    assert method_problem(handler, "gone", ()) == "Handler.gone is missing"
    assert method_problem(handler, "not_callable", ()) == "Handler.not_callable is missing"
    assert method_problem(handler, "not_async", ("localpart",)) == (
        "Handler.not_async is no longer a coroutine function")
