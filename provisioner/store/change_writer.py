"""Group commit of applied changes: link, account state and audit row, in bulk.

A sync of 10,000 accounts must keep pace with Synapse. Committing each change on its own
cost about 0.5 ms of client CPU per change (two statements, a commit), which on a shared
two-core machine is CPU taken from Synapse. Here every caller still waits until its own
change is committed, so "applied" is never reported for a change without its audit row,
but changes that finish within a short window (50 ms) are written together in one
commit, with one multi-row statement per table.

If a batch fails, each change of it is retried on its own, so one bad change (say, a link
that already exists) fails alone.

A room change also deletes its intent (`room_intents`) in the transaction that writes its
audit row: an intent and its audit row never exist together (provisioner.rooms.late).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, insert, update
from sqlalchemy.exc import SQLAlchemyError

from provisioner.errors import HauspostError
from provisioner.store.database import Store
from provisioner.store.models import AccountRow, AuditRow
from provisioner.store.rooms_models import RoomIntentRow

logger = logging.getLogger(__name__)

_ACCOUNTS = cast(Table, AccountRow.__table__)
_AUDIT = cast(Table, AuditRow.__table__)
_INTENTS = cast(Table, RoomIntentRow.__table__)
_MUTABLE = frozenset({"display_name", "email", "active", "hold", "deactivated_at",
                      "deactivation_reason"})


class ChangeNotStoredError(HauspostError):
    """Synapse has the change, but the store could not record it (logged loudly)."""


@dataclass(frozen=True)
class Change:
    audit: dict[str, Any]
    #: A new `accounts` row (the employee/account link), or None.
    link: dict[str, Any] | None = None
    #: (user_id, column -> value) for the account's applied state, or None.
    account_update: tuple[str, dict[str, Any]] | None = None
    #: (run id, seq) of the room intent this change resolves, or None.
    intent: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.account_update is not None:
            unknown = set(self.account_update[1]) - _MUTABLE
            if unknown:
                raise ValueError(f"account columns not changeable: {sorted(unknown)}")


def write_changes(conn: Connection, changes: list[Change]) -> None:
    """Write a batch in one transaction (the caller's), one statement per table/shape."""
    links = [c.link for c in changes if c.link is not None]
    if links:
        conn.execute(insert(_ACCOUNTS), links)
    by_shape: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for c in changes:
        if c.account_update is not None:
            user_id, values = c.account_update
            by_shape[tuple(sorted(values))].append({"b_user_id": user_id, **values})
    for shape, rows in by_shape.items():
        stmt = (update(_ACCOUNTS).where(_ACCOUNTS.c.user_id == bindparam("b_user_id"))
                .values({k: bindparam(k) for k in shape}))
        result = conn.execute(stmt, rows)
        if result.rowcount != len(rows):
            raise LookupError(f"{len(rows) - result.rowcount} account(s) have no stored link")
    conn.execute(insert(_AUDIT), [c.audit for c in changes])
    resolved: dict[int, list[int]] = defaultdict(list)
    for c in changes:
        if c.intent is not None:
            resolved[c.intent[0]].append(c.intent[1])
    for run_id, seqs in resolved.items():
        conn.execute(delete(_INTENTS).where(_INTENTS.c.run_id == run_id,
                                            _INTENTS.c.seq.in_(seqs)))


class ChangeWriter:
    """`async with ChangeWriter(store) as writer: await writer.commit(change)`."""

    def __init__(self, store: Store, *, gather_seconds: float = 0.05) -> None:
        self._store = store
        self.gather_seconds = gather_seconds
        self._pending: list[tuple[Change, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ChangeWriter:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def commit(self, change: Change) -> None:
        """Return once `change` is committed; raise ChangeNotStoredError if it can't be."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((change, future))
        self._wakeup.set()
        await future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if not self._closing:
                # Collect what finishes meanwhile: admin-API calls keep running (waiting for
                # a commit takes no request slot), and one commit of many rows costs about
                # what one commit of one row does.
                await asyncio.sleep(self.gather_seconds)
            self._wakeup.clear()
            batch, self._pending = self._pending, []
            if batch:
                # On the event loop, not in a thread: a thread running SQLAlchemy holds the
                # GIL for up to the 5 ms switch interval and stalls the admin-API requests
                # (measured: 30 % slower than this).
                outcomes = self._write([c for c, _ in batch])
                for (_, future), error in zip(batch, outcomes, strict=True):
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
            if self._closing and not self._pending:
                return

    def _write(self, changes: list[Change]) -> list[BaseException | None]:
        if len(changes) == 1:
            return [self._write_one(changes[0])]
        try:
            with self._store.transaction() as conn:
                write_changes(conn, changes)
            return [None] * len(changes)
        except (SQLAlchemyError, LookupError):
            # Find the culprit(s): every change on its own.
            return [self._write_one(c) for c in changes]

    def _write_one(self, change: Change) -> BaseException | None:
        try:
            with self._store.transaction() as conn:
                write_changes(conn, [change])
            return None
        except (SQLAlchemyError, LookupError) as exc:
            return self._error(change, exc)

    @staticmethod
    def _error(change: Change, exc: BaseException) -> BaseException:
        target = change.audit.get("target")
        logger.error("could not record the applied change %s on %s in the store: %s",
                     change.audit.get("action"), target, exc)
        return ChangeNotStoredError(
            f"{change.audit.get('action')} on {target} was applied in Synapse but could not "
            "be recorded in the store (see the log)")
