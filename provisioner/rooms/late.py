"""Room changes that reached Synapse but not the audit log, recorded late.

The room sync writes every action of its plan down as an intent before its first request
(`apply.write_intents`); the audit row of an applied action deletes its intent in the same
transaction (`store.change_writer`). So an intent still stored when a room sync starts is
an action whose run ended - SIGKILLed, or its store gone - after planning it and before
recording it: somewhere between "never sent" and "reached Synapse". The new run holds the
same run lock and has just read every managed room to plan; from that read it decides:

- in effect (the member is joined; the member left by the service account's kick; the
  state event holds the planned value; the space lists the child or no longer does; the
  room is created, archived or released in the store): the audit row the dead run would
  have written is appended now, with that run's id and actor, the real time and
  `details.recorded_late` / `details.recorded_by_run`;
- not in effect: the intent is dropped (the change never happened; the plan does it again
  if it is still wanted).

An intent and its audit row are never both stored, so no change is audited twice, and
every change of the room sync that reached Synapse ends with exactly one row. Runs of the
kinds that take the run lock and still say "running" are marked "interrupted" at the same
time: under the lock, nothing else can be running.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update

from provisioner.rooms.apply import AuditEntry, audit_entry
from provisioner.rooms.plan import (
    MARKER,
    RETENTION,
    AddMember,
    AddSpaceChild,
    ArchiveRoom,
    CreateRoom,
    ManagedRoom,
    ReleaseRoom,
    RemoveMember,
    RemoveSpaceChild,
    RoomAction,
    RoomState,
    SetMarker,
    SetRoomState,
    action_from_json,
)
from provisioner.store import Store
from provisioner.store import repository as repo
from provisioner.store.models import RunRow
from provisioner.store.rooms_models import ManagedRoomRow, RoomIntentRow

logger = logging.getLogger(__name__)

#: Run kinds that take the "sync" run lock (sync, the service's room job, SCIM reconcile).
LOCKED_RUN_KINDS = ("sync", "rooms", "scim")


@dataclass(frozen=True)
class Intent:
    run_id: int
    seq: int
    #: The run's actor: who made the change.
    actor: str
    #: None: not readable any more (written by another version); dropped.
    action: RoomAction | None


@dataclass(frozen=True)
class LateDecision:
    intent: Intent
    #: The row to append; None: the change is not in effect (the intent is dropped).
    entry: AuditEntry | None
    #: An un-archiving marker reached Synapse but the room's status in the store did not.
    reactivate: bool = False


_STATE_FIELDS = {"m.room.name": "name", "m.room.topic": "topic", "m.room.avatar": "avatar",
                 "m.room.history_visibility": "history_visibility",
                 "m.room.power_levels": "power_levels", MARKER: "marker",
                 RETENTION: "retention"}


def _normal(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else (value or None)


def in_effect(action: RoomAction, managed: Mapping[str, ManagedRoom],
              states: Mapping[str, RoomState], service_user_id: str) -> bool:
    """Whether Synapse (and, for the steps the store finishes, the store) shows `action`
    done. The planner planned it because it was not, and only the run holding the lock
    changes managed rooms, so "done now" means "done by that run"."""
    row = managed.get(action.key)
    if isinstance(action, CreateRoom):
        return row is not None and row.status != "released"
    if isinstance(action, ArchiveRoom):  # the store's status is set after Synapse's writes
        return row is not None and row.status == "archived"
    if isinstance(action, ReleaseRoom):
        return row is not None and row.status == "released"
    state = states.get(action.key)
    if state is None:
        return False
    if isinstance(action, SetRoomState):
        current = getattr(state, _STATE_FIELDS[action.event_type])
        return bool(_normal(current) == _normal(action.new))
    if isinstance(action, AddSpaceChild | RemoveSpaceChild):
        child = managed.get(action.child)
        listed = child is not None and child.room_id in state.children
        return listed == isinstance(action, AddSpaceChild)
    if isinstance(action, AddMember | RemoveMember):
        member = state.members.get(action.user_id)
        if isinstance(action, AddMember):
            return member is not None and member.membership == "join"
        # A kick is a leave the service account sent; leaving or deactivation is the user's.
        return (member is not None and member.membership == "leave"
                and member.sender == service_user_id)
    raise TypeError(f"unknown room action {action!r}")  # pragma: no cover


def decide(intents: Sequence[Intent], managed: Mapping[str, ManagedRoom],
           states: Mapping[str, RoomState], service_user_id: str) -> list[LateDecision]:
    """For each intent left behind: the audit row to record late, or none. Pure."""
    room_ids = {key: room.room_id for key, room in managed.items()}
    out = []
    for intent in intents:
        action = intent.action
        entry: AuditEntry | None = None
        if action is not None and in_effect(action, managed, states, service_user_id):
            try:
                entry = audit_entry(action, room_ids)
            except KeyError:  # a room the store does not know: nothing to tell
                entry = None
        reactivate = (entry is not None and isinstance(action, SetMarker)
                      and not action.new.get("archived")
                      and managed[action.key].status == "archived")
        out.append(LateDecision(intent, entry, reactivate))
    return out


# --- the adapters --------------------------------------------------------------------------


def load_intents(store: Store) -> list[Intent]:
    """Every intent left behind, oldest run first (unreadable ones logged and skipped)."""
    with store.session() as session:
        rows = session.execute(
            select(RoomIntentRow.run_id, RoomIntentRow.seq, RoomIntentRow.action, RunRow.actor)
            .join(RunRow, RunRow.id == RoomIntentRow.run_id)
            .order_by(RoomIntentRow.run_id, RoomIntentRow.seq)).all()
    out = []
    for run_id, seq, data, actor in rows:
        action: RoomAction | None = None
        try:
            action = action_from_json(data)
        except ValueError as exc:
            logger.warning("room intent %d/%d is not readable (%s); dropped", run_id, seq, exc)
        out.append(Intent(run_id, seq, actor, action))
    return out


def record_decisions(store: Store, decisions: Sequence[LateDecision], *, run_id: int,
                     now: datetime | None = None) -> list[int]:
    """Append the late rows, drop every decided intent, finish the store's part of an
    un-archiving and mark the other locked runs still "running" as interrupted, in one
    transaction; returns the ids of the runs marked."""
    now = now or datetime.now(UTC)
    with store.session() as session:
        for d in decisions:
            if d.entry is None:
                continue
            repo.append_audit(session, actor=d.intent.actor, action=d.entry.action,
                              target=d.entry.target, now=now, reason=d.entry.reason,
                              run_id=d.intent.run_id,
                              details={**d.entry.details, "recorded_late": True,
                                       "recorded_by_run": run_id})
            if d.reactivate and d.intent.action is not None:
                session.execute(update(ManagedRoomRow)
                                .where(ManagedRoomRow.policy_key == d.intent.action.key)
                                .values(status="active", updated_at=now))
        by_run: dict[int, list[int]] = {}
        for d in decisions:
            by_run.setdefault(d.intent.run_id, []).append(d.intent.seq)
        for intent_run, seqs in by_run.items():
            session.execute(delete(RoomIntentRow).where(RoomIntentRow.run_id == intent_run,
                                                        RoomIntentRow.seq.in_(seqs)))
        interrupted = list(session.scalars(
            select(RunRow.id).where(RunRow.status == "running", RunRow.id != run_id,
                                    RunRow.kind.in_(LOCKED_RUN_KINDS))))
        if interrupted:
            session.execute(update(RunRow).where(RunRow.id.in_(interrupted))
                            .values(status="interrupted"))
    return interrupted


def record_late_changes(store: Store, managed: Mapping[str, ManagedRoom],
                        states: Mapping[str, RoomState], *, service_user_id: str,
                        run_id: int) -> int:
    """Decide every intent left behind against the rooms as just read (call under the run
    lock, before this run writes intents of its own); returns how many rows were recorded
    late."""
    intents = load_intents(store)
    decisions = decide(intents, managed, states, service_user_id)
    interrupted = record_decisions(store, decisions, run_id=run_id)
    late = [d for d in decisions if d.entry is not None]
    if interrupted:
        logger.warning("run(s) %s ended without finishing; marked interrupted",
                       ", ".join(map(str, interrupted)))
    if late:
        logger.warning("recorded %d room change(s) late that run(s) %s made in Synapse "
                       "without recording them", len(late),
                       ", ".join(sorted({str(d.intent.run_id) for d in late})))
    if len(late) < len(decisions):
        logger.info("dropped %d room intent(s) of ended runs that never reached Synapse",
                    len(decisions) - len(late))
    return len(late)
