"""Our `check_event_allowed` callbacks get the state they read, not the whole room's.

Before it calls any module's `check_event_allowed`, Synapse loads every current state
event of the room - in the all-hands room of 10,000 employees, 10,000 member events - for
every event created there, joins included. Profiled (docs/scale-out.md, "Where a join
spends its time") that loading is the only part of a join that grows with the room, and
the biggest: a quarter to nearly half of Synapse's main thread during a room sync.

Each of our callbacks reads at most one state event, by key: the room's create event,
encryption event or Hauspost marker. So each module registers its callback through
`declared_check_event_allowed(api, callback, reads=...)`, naming what it reads, and the
process's one `ThirdPartyEventRulesModuleApiCallbacks.check_event_allowed` is wrapped:
when every registered callback is one of ours, Synapse's own method runs unchanged
(its loop, its exception handling, replacement content) with a context whose
`get_prev_state_ids()` reads only the declared keys. When any other module registered a
callback, Synapse's method runs as it is, with the whole state.

Fail closed: a callback that reads a key it did not declare raises `UndeclaredStateReadError`
whether the state is whole or narrowed, which Synapse turns into a refusal of the event;
every module's tests run its callback through the same guard, so a new read without its
declaration fails the tests, not production. If the wrapper cannot be installed (Synapse's
internals changed shape), Synapse keeps loading the whole state: slower, never less safe.

Tested with Synapse 1.163.x.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, cast

from synapse.events import EventBase
from synapse.module_api import ModuleApi
from synapse.types import JsonDict, StateMap
from synapse.types.state import StateFilter

logger = logging.getLogger(__name__)

StateKey = tuple[str, str]
CheckEventAllowed = Callable[[EventBase, StateMap[EventBase]],
                             Awaitable[tuple[bool, JsonDict | None]]]

_READS_MARK = "_hauspost_state_reads"
_WRAPPED_MARK = "_hauspost_narrowed_state"


class UndeclaredStateReadError(RuntimeError):
    """A callback read a state key it did not declare (a programming error: refuse)."""


class DeclaredState(Mapping[StateKey, EventBase]):
    """The room state as one callback may see it: only the keys it declared."""

    def __init__(self, state: Mapping[StateKey, EventBase], reads: frozenset[StateKey],
                 owner: str) -> None:
        self._state = state
        self._reads = reads
        self._owner = owner

    def __getitem__(self, key: StateKey) -> EventBase:
        if key not in self._reads:
            raise UndeclaredStateReadError(
                f"{self._owner} read room state {key!r} without declaring it; add it to "
                "the reads= of its declared_check_event_allowed call")
        return self._state[key]

    def __iter__(self) -> Iterator[StateKey]:
        return (key for key in self._reads if key in self._state)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def declared_check_event_allowed(callback: CheckEventAllowed, reads: Iterable[StateKey]
                                 ) -> CheckEventAllowed:
    """`callback` as Synapse should call it: seeing only `reads`, marked with them."""
    keys = frozenset(reads)
    owner = getattr(callback, "__qualname__", repr(callback))

    async def check_event_allowed(event: EventBase, state: StateMap[EventBase]
                                  ) -> tuple[bool, JsonDict | None]:
        return await callback(event, DeclaredState(state, keys, owner))

    setattr(check_event_allowed, _READS_MARK, keys)
    check_event_allowed.__qualname__ = f"declared({owner})"
    return check_event_allowed


def register_check_event_allowed(api: ModuleApi, callback: CheckEventAllowed,
                                 reads: Iterable[StateKey], **other_callbacks: Any) -> None:
    """Register `callback` (and any other third-party-rules callbacks) with its reads
    declared, and make sure this process narrows the state it loads for them."""
    api.register_third_party_rules_callbacks(
        check_event_allowed=declared_check_event_allowed(callback, reads), **other_callbacks)
    narrow_state_loading(api)


def declared_reads(callbacks: Iterable[object]) -> frozenset[StateKey] | None:
    """The union of the callbacks' declared reads, or None if any declared nothing
    (another module's callback: it gets the whole state)."""
    union: set[StateKey] = set()
    for callback in callbacks:
        reads = getattr(callback, _READS_MARK, None)
        if not isinstance(reads, frozenset):
            return None
        union |= reads
    return frozenset(union)


class _NarrowedContext:
    """An event context whose `get_prev_state_ids()` reads only the given keys."""

    def __init__(self, context: Any, state_filter: StateFilter) -> None:
        self._context = context
        self._state_filter = state_filter

    async def get_prev_state_ids(self, state_filter: StateFilter | None = None
                                 ) -> StateMap[str]:
        asked = self._state_filter if state_filter is None else state_filter
        ids = await self._context.get_prev_state_ids(asked)
        # A context made for a batch (a new room's first events, batched memberships)
        # holds the state as a map and answers all of it whatever the filter asks.
        return _pick(asked, cast(StateMap[str], ids))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _pick(state_filter: StateFilter, ids: StateMap[str]) -> StateMap[str]:
    """`state_filter.filter_state(ids)`, by lookup when the filter names every key (a
    room's map holds one entry per member; walking it per event grows with the room)."""
    if state_filter.has_wildcards():
        return state_filter.filter_state(ids)
    return {key: ids[key] for key in state_filter.concrete_types() if key in ids}


def _shape_problem(rules: object) -> str | None:
    method = getattr(rules, "check_event_allowed", None)
    if method is None or not inspect.iscoroutinefunction(method):
        return "ThirdPartyEventRulesModuleApiCallbacks.check_event_allowed is gone"
    if tuple(inspect.signature(method).parameters) != ("event", "context"):
        return "check_event_allowed no longer takes (event, context)"
    if not isinstance(getattr(rules, "_check_event_allowed_callbacks", None), list):
        return "the registered check_event_allowed callbacks are no longer a list"
    try:
        source = inspect.getsource(method)
    except (OSError, TypeError):
        return "check_event_allowed's source cannot be read"
    if "context.get_prev_state_ids()" not in source:
        return "check_event_allowed no longer reads the state through context.get_prev_state_ids()"
    from synapse.events.snapshot import EventContext, UnpersistedEventContext
    for cls in (EventContext, UnpersistedEventContext):
        if "state_filter" not in inspect.signature(cls.get_prev_state_ids).parameters:
            return f"{cls.__name__}.get_prev_state_ids takes no state_filter"
    return None


def narrow_state_loading(api: ModuleApi) -> bool:
    """Wrap this process's check_event_allowed once; False (and a warning) if it cannot."""
    hs = getattr(api, "_hs", None)
    get_callbacks = getattr(hs, "get_module_api_callbacks", None)
    rules = getattr(get_callbacks(), "third_party_event_rules", None) if get_callbacks else None
    if rules is None:
        logger.warning("Hauspost: no third-party event rules object on this homeserver; "
                       "Synapse loads the whole room state for every event")
        return False
    if getattr(rules, _WRAPPED_MARK, False):
        return True
    problem = _shape_problem(rules)
    if problem is not None:
        logger.warning("Hauspost: %s (tested with Synapse 1.163.x); Synapse keeps loading the "
                       "whole room state for every event (slower, same decisions)", problem)
        return False
    synapse_check: Callable[[EventBase, Any], Awaitable[tuple[bool, JsonDict | None]]] = (
        rules.check_event_allowed)

    # The filter is worked out once per set of registered callbacks (they are registered
    # at start-up), not per event: this runs for every event the process creates.
    cached: list[tuple[tuple[object, ...], StateFilter | None]] = []

    def state_filter() -> StateFilter | None:
        callbacks = tuple(rules._check_event_allowed_callbacks)
        if not cached or cached[0][0] != callbacks:
            reads = declared_reads(callbacks)
            narrowed = (None if reads is None else
                        StateFilter.from_types(sorted(reads)) if reads else StateFilter.none())
            cached[:] = [(callbacks, narrowed)]
        return cached[0][1]

    async def check_event_allowed(event: EventBase, context: Any
                                  ) -> tuple[bool, JsonDict | None]:
        narrowed = state_filter()
        if narrowed is None:
            return await synapse_check(event, context)
        return await synapse_check(event, _NarrowedContext(context, narrowed))

    rules.check_event_allowed = check_event_allowed
    setattr(rules, _WRAPPED_MARK, True)
    logger.info("Hauspost: check_event_allowed loads only the room state our callbacks "
                "declare (the whole state if another module registers a callback)")
    return True
