"""Our check_event_allowed callbacks see only the state they declare.

The wrapper runs Synapse's own `ThirdPartyEventRulesModuleApiCallbacks.check_event_allowed`
(the installed version's code, not a copy) with a fake store and event context, so these
tests prove which state Synapse is asked to load and what each callback gets.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from synapse.module_api.callbacks.third_party_event_rules_callbacks import (
    ThirdPartyEventRulesModuleApiCallbacks,
)
from synapse.types.state import StateFilter

from synapse_modules.event_rules_state import (
    DeclaredState,
    UndeclaredStateReadError,
    declared_check_event_allowed,
    declared_reads,
    narrow_state_loading,
)
from tests.unit.test_membership_fakes import event

CREATE = ("m.room.create", "")
ENCRYPTION = ("m.room.encryption", "")
MARKER = ("de.hauspost.managed", "")


def state_event(key: tuple[str, str], content: dict[str, Any]) -> Any:
    return event(key[0], "@it:firma.test", content, state_key=key[1])


ROOM_STATE = {
    CREATE: state_event(CREATE, {"room_version": "11"}),
    ENCRYPTION: state_event(ENCRYPTION, {"algorithm": "m.megolm.v1.aes-sha2"}),
    MARKER: state_event(MARKER, {"version": 1}),
    # 2,000 members, which the narrowed path must never load.
    **{("m.room.member", f"@u{i}:firma.test"):
       state_event(("m.room.member", f"@u{i}:firma.test"), {"membership": "join"})
       for i in range(2000)},
}
MESSAGE = event("m.room.message", "@a:firma.test", {"body": "hi"})


class FakeContext:
    def __init__(self) -> None:
        self.filters: list[StateFilter | None] = []

    async def get_prev_state_ids(self, state_filter: StateFilter | None = None
                                 ) -> dict[tuple[str, str], str]:
        self.filters.append(state_filter)
        keys = ROOM_STATE if state_filter is None else {
            k for k in ROOM_STATE if k in state_filter}
        return {k: ROOM_STATE[k].event_id for k in keys}


class FakeStore:
    def __init__(self) -> None:
        self.fetched = 0
        self._by_id = {e.event_id: e for e in ROOM_STATE.values()}

    async def get_events(self, event_ids: Any) -> dict[str, Any]:
        ids = list(event_ids)
        self.fetched += len(ids)
        return {i: self._by_id[i] for i in ids}


class FakeHomeserver:
    def __init__(self, rules: Any) -> None:
        self._rules = rules

    def get_module_api_callbacks(self) -> Any:
        return type("Callbacks", (), {"third_party_event_rules": self._rules})()


class FakeApi:
    def __init__(self, rules: Any) -> None:
        self._hs = FakeHomeserver(rules)


def synapse_rules() -> tuple[ThirdPartyEventRulesModuleApiCallbacks, FakeStore]:
    """The installed Synapse's callbacks object, without a homeserver behind it."""
    rules = object.__new__(ThirdPartyEventRulesModuleApiCallbacks)
    store = FakeStore()
    rules.store = store  # type: ignore[assignment]
    rules._check_event_allowed_callbacks = []
    return rules, store


def check(rules: ThirdPartyEventRulesModuleApiCallbacks, context: FakeContext) -> Any:
    return asyncio.run(rules.check_event_allowed(MESSAGE, context))  # type: ignore[arg-type]


def recording(seen: list[dict[Any, Any]], *keys: tuple[str, str]) -> Any:
    async def callback(event: Any, state: Any) -> tuple[bool, None]:
        seen.append({k: state.get(k) for k in keys})
        return True, None
    return callback


def test_declared_state_hides_undeclared_keys_and_refuses_reading_them() -> None:
    view = DeclaredState(ROOM_STATE, frozenset({ENCRYPTION, ("m.room.name", "")}), "cb")
    assert view.get(ENCRYPTION) is ROOM_STATE[ENCRYPTION]
    assert view.get(("m.room.name", "")) is None  # declared, not in the room
    assert list(view) == [ENCRYPTION] and len(view) == 1
    with pytest.raises(UndeclaredStateReadError, match=r"cb read room state \('m.room.create'"):
        view.get(CREATE)  # Mapping.get swallows KeyError only; this must not be swallowed
    with pytest.raises(UndeclaredStateReadError):
        view[("m.room.member", "@u1:firma.test")]


def test_declared_reads_is_the_union_or_none_for_a_foreign_callback() -> None:
    seen: list[dict[Any, Any]] = []
    ours = [declared_check_event_allowed(recording(seen), [CREATE]),
            declared_check_event_allowed(recording(seen), [ENCRYPTION, CREATE]),
            declared_check_event_allowed(recording(seen), ())]
    assert declared_reads(ours) == frozenset({CREATE, ENCRYPTION})
    assert declared_reads([]) == frozenset()
    assert declared_reads([*ours, recording(seen)]) is None


def test_synapse_loads_only_declared_state_when_all_callbacks_are_ours() -> None:
    rules, store = synapse_rules()
    seen: list[dict[Any, Any]] = []
    rules._check_event_allowed_callbacks += [
        declared_check_event_allowed(recording(seen, ENCRYPTION), [ENCRYPTION]),
        declared_check_event_allowed(recording(seen, MARKER), [MARKER]),
        declared_check_event_allowed(recording(seen), ())]
    assert narrow_state_loading(FakeApi(rules)) is True  # type: ignore[arg-type]
    context = FakeContext()
    assert check(rules, context) == (True, None)
    assert len(context.filters) == 1
    asked = context.filters[0]
    assert asked is not None and not asked.include_others
    assert sorted(asked.concrete_types()) == sorted([ENCRYPTION, MARKER])
    assert store.fetched == 2  # not 2,003
    assert seen == [{ENCRYPTION: ROOM_STATE[ENCRYPTION]}, {MARKER: ROOM_STATE[MARKER]}, {}]


class BatchContext(FakeContext):
    """A context made for a batch (a new room's first events, batched memberships):
    Synapse's `UnpersistedEventContext` answers its whole state map, whatever the filter."""

    async def get_prev_state_ids(self, state_filter: StateFilter | None = None
                                 ) -> dict[tuple[str, str], str]:
        self.filters.append(state_filter)
        return {k: e.event_id for k, e in ROOM_STATE.items()}


def test_a_batch_context_that_ignores_the_filter_still_loads_only_declared_state() -> None:
    rules, store = synapse_rules()
    seen: list[dict[Any, Any]] = []
    rules._check_event_allowed_callbacks += [
        declared_check_event_allowed(recording(seen, ENCRYPTION), [ENCRYPTION]),
        declared_check_event_allowed(recording(seen, CREATE), [CREATE, ("m.room.name", "")])]
    assert narrow_state_loading(FakeApi(rules)) is True  # type: ignore[arg-type]
    assert check(rules, BatchContext()) == (True, None)  # type: ignore[arg-type]
    assert store.fetched == 2  # not 2,003
    assert seen == [{ENCRYPTION: ROOM_STATE[ENCRYPTION]}, {CREATE: ROOM_STATE[CREATE]}]


def test_a_foreign_callback_gets_the_whole_state_and_ours_still_only_theirs() -> None:
    rules, store = synapse_rules()
    seen: list[dict[Any, Any]] = []
    foreign_sizes: list[int] = []

    async def foreign(event: Any, state: Any) -> tuple[bool, None]:
        foreign_sizes.append(len(state))
        return True, None

    rules._check_event_allowed_callbacks += [
        declared_check_event_allowed(recording(seen, CREATE), [CREATE]), foreign]
    narrow_state_loading(FakeApi(rules))  # type: ignore[arg-type]
    context = FakeContext()
    assert check(rules, context) == (True, None)
    assert context.filters == [None]
    assert store.fetched == len(ROOM_STATE)
    assert foreign_sizes == [len(ROOM_STATE)]
    assert seen == [{CREATE: ROOM_STATE[CREATE]}]


def test_an_undeclared_read_refuses_the_event_through_synapse() -> None:
    rules, _ = synapse_rules()

    async def sloppy(event: Any, state: Any) -> tuple[bool, None]:
        state.get(CREATE)  # declared ENCRYPTION only
        return True, None

    rules._check_event_allowed_callbacks.append(declared_check_event_allowed(sloppy,
                                                                             [ENCRYPTION]))
    narrow_state_loading(FakeApi(rules))  # type: ignore[arg-type]
    from synapse.api.errors import ModuleFailedException
    with pytest.raises(ModuleFailedException):
        check(rules, FakeContext())


def test_a_refusal_and_a_replacement_keep_synapses_meaning() -> None:
    rules, _ = synapse_rules()

    async def refuse(event: Any, state: Any) -> tuple[bool, None]:
        return False, None

    async def replace(event: Any, state: Any) -> tuple[bool, dict[str, Any]]:
        return True, {"body": "replaced"}

    rules._check_event_allowed_callbacks.append(declared_check_event_allowed(replace, ()))
    narrow_state_loading(FakeApi(rules))  # type: ignore[arg-type]
    assert check(rules, FakeContext()) == (
        True, {"body": "replaced"})
    rules._check_event_allowed_callbacks.insert(0, declared_check_event_allowed(refuse, ()))
    assert check(rules, FakeContext()) == (False, None)


def test_wrapping_twice_wraps_once_and_a_missing_homeserver_keeps_synapses_path(
        caplog: pytest.LogCaptureFixture) -> None:
    rules, _ = synapse_rules()
    assert narrow_state_loading(FakeApi(rules)) is True  # type: ignore[arg-type]
    first = rules.check_event_allowed
    assert narrow_state_loading(FakeApi(rules)) is True  # type: ignore[arg-type]
    assert rules.check_event_allowed is first
    assert narrow_state_loading(object()) is False  # type: ignore[arg-type]
    assert "loads the whole room state" in caplog.text


def test_a_changed_synapse_method_is_left_alone(caplog: pytest.LogCaptureFixture) -> None:
    class Changed:
        _check_event_allowed_callbacks: list[Any] = []

        async def check_event_allowed(self, event: Any, context: Any, extra: Any) -> Any:
            return True, None

    rules = Changed()
    original = rules.check_event_allowed
    assert narrow_state_loading(FakeApi(rules)) is False  # type: ignore[arg-type]
    assert rules.check_event_allowed == original
    assert "no longer takes (event, context)" in caplog.text


def test_a_callback_registered_after_the_first_event_changes_what_is_loaded() -> None:
    rules, store = synapse_rules()
    seen: list[dict[Any, Any]] = []
    rules._check_event_allowed_callbacks.append(
        declared_check_event_allowed(recording(seen, CREATE), [CREATE]))
    narrow_state_loading(FakeApi(rules))  # type: ignore[arg-type]
    context = FakeContext()
    check(rules, context)
    first = context.filters[0]
    assert first is not None and first.concrete_types() == [CREATE]
    assert store.fetched == 1

    async def foreign(event: Any, state: Any) -> tuple[bool, None]:
        return True, None

    rules._check_event_allowed_callbacks.append(foreign)  # another module, loaded later
    check(rules, context)
    assert context.filters[1] is None  # the whole state again
    assert store.fetched == 1 + len(ROOM_STATE)
