"""Refusals, and wrappers that turn a crash inside a policy callback into a refusal.

Synapse treats a module exception differently per callback (a 500 here, "allowed" nowhere
today, but that is not a promise). Our rule is simple: if a policy can't decide, the action
is refused and the reason is logged, never allowed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, NoReturn, ParamSpec, TypeVar

from synapse.module_api import NOT_SPAM, EventBase, JsonDict
from synapse.module_api.errors import Codes, SynapseError
from twisted.internet import defer

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

SpamResult = Literal["NOT_SPAM"] | tuple[Codes, dict[str, str]]

INTERNAL_ERROR_MESSAGE = (
    "The company policy check failed on the server, so this action was refused. "
    "Please try again; if it keeps failing, tell IT."
)


@dataclass(frozen=True)
class Refusal:
    """Why an action is refused, in words a user understands."""

    message: str
    errcode: Codes = Codes.FORBIDDEN

    def as_spam_result(self) -> tuple[Codes, dict[str, str]]:
        # Synapse merges these fields into the error body, so "error" replaces its
        # generic text ("Invites have been disabled on this server") with ours.
        return self.errcode, {"error": self.message}

    def as_error(self) -> SynapseError:
        return SynapseError(403, self.message, self.errcode)


def spam_result(refusal: Refusal | None) -> SpamResult:
    return NOT_SPAM if refusal is None else refusal.as_spam_result()


def event_allowed(refusal: Refusal | None, event: EventBase,
                  log: logging.Logger) -> tuple[bool, JsonDict | None]:
    """`check_event_allowed`'s answer: allowed, or the refusal logged (to `log`) and raised."""
    if refusal is None:
        return True, None
    log.info("refusing %s %s in %s from %s: %s", event.type, event.event_id, event.room_id,
             event.sender, refusal.message)
    # Raising (rather than returning False) is the only way to tell the user why.
    raise refusal.as_error()


def _is_control_flow(exc: BaseException) -> bool:
    # SynapseError is how we (and Synapse) deliberately refuse; cancellations must propagate.
    return isinstance(exc, SynapseError | asyncio.CancelledError | defer.CancelledError)


def fail_closed(on_error: Callable[[], R]) -> Callable[[Callable[P, Awaitable[R]]],
                                                        Callable[P, Awaitable[R]]]:
    """Run a callback; if it crashes, log it and return `on_error()` (which refuses)."""

    def decorate(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(func)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await func(*args, **kwargs)
            except Exception as exc:
                if _is_control_flow(exc):
                    raise
                logger.exception("%s failed; refusing the action", func.__qualname__)
                return on_error()

        return guarded

    return decorate


def fail_closed_raising(func: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Like `fail_closed`, for callbacks that refuse by raising a SynapseError."""
    on_error: Callable[[], R] = raise_refusal
    return fail_closed(on_error)(func)


def refuse_spam() -> SpamResult:
    return Refusal(INTERNAL_ERROR_MESSAGE).as_spam_result()


def raise_refusal() -> NoReturn:
    raise Refusal(INTERNAL_ERROR_MESSAGE).as_error()


def drop_event() -> bool:
    return True
