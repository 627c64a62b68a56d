"""Collect an access review from Synapse, the directory and the room policy.

Per managed room or space: who is joined because a policy rule puts them there
(mandatory), who joined on their own (chosen), and who the policy wants but is not in
(missing). Plus the rooms nobody manages (with their size), the accounts no employee
record explains (the account planner's own verdict), server admins and protected service
accounts. Read-only: nothing in Synapse changes. The result is stored, so the console and
`hauspost review` show the same review, with its date, to the auditor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from provisioner.accounts.policy import policy_for
from provisioner.directory.read import read_directory
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.rooms import run as room_sync
from provisioner.rooms.plan import DesiredRoom, expand
from provisioner.settings import Settings
from provisioner.store import Store
from provisioner.store import repository as repo
from provisioner.store.models import AccountRow
from provisioner.store.review_models import AccessReviewRow
from provisioner.sync.run import read_and_plan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoomReview:
    room_id: str
    kind: str  # room | space
    key: str | None  # the policy key; None: nobody manages this room
    name: str | None
    rule: str | None
    joined: int
    mandatory: tuple[str, ...] = ()
    chosen: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccessReview:
    at: datetime
    actor: str
    managed: tuple[RoomReview, ...]
    unmanaged: tuple[RoomReview, ...]
    unexplained: tuple[str, ...]
    admins: tuple[str, ...]
    protected: tuple[str, ...]
    accounts_active: int
    accounts_deactivated: int
    id: int | None = None
    names: dict[str, str] = field(default_factory=dict)
    #: Tokens an admin obtained to act as somebody (None: the sessions module is not loaded).
    admin_tokens: tuple[dict[str, Any], ...] | None = None

    def summary(self) -> dict[str, int]:
        return {"managed_rooms": len(self.managed), "unmanaged_rooms": len(self.unmanaged),
                "chosen_members": sum(len(r.chosen) for r in self.managed),
                "missing_members": sum(len(r.missing) for r in self.managed),
                "unexplained": len(self.unexplained), "admins": len(self.admins),
                "admin_issued_tokens": len(self.admin_tokens or ()),
                "accounts_active": self.accounts_active,
                "accounts_deactivated": self.accounts_deactivated}

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["at"] = self.at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], *, review_id: int | None = None) -> AccessReview:
        def rooms(items: Sequence[dict[str, Any]]) -> tuple[RoomReview, ...]:
            return tuple(RoomReview(**{**r, "mandatory": tuple(r["mandatory"]),
                                       "chosen": tuple(r["chosen"]),
                                       "missing": tuple(r["missing"])}) for r in items)

        return cls(at=datetime.fromisoformat(data["at"]), actor=data["actor"],
                   managed=rooms(data["managed"]), unmanaged=rooms(data["unmanaged"]),
                   unexplained=tuple(data["unexplained"]), admins=tuple(data["admins"]),
                   protected=tuple(data["protected"]),
                   accounts_active=int(data["accounts_active"]),
                   accounts_deactivated=int(data["accounts_deactivated"]),
                   id=review_id, names=dict(data.get("names", {})),
                   admin_tokens=(None if data.get("admin_tokens") is None
                                 else tuple(data["admin_tokens"])))


async def _all_rooms(admin: SynapseAdmin) -> list[dict[str, Any]]:
    rooms: list[dict[str, Any]] = []
    start: int | str | None = 0
    while start is not None:
        resp = await admin.request("GET", f"/_synapse/admin/v1/rooms?limit=500&from={start}")
        body = resp.json()
        rooms.extend(body.get("rooms", []))
        start = body.get("next_batch")
    return rooms


ADMIN_TOKENS_PATH = "/_synapse/client/hauspost/admin_tokens"


async def _admin_tokens(admin: SynapseAdmin) -> tuple[dict[str, Any], ...] | None:
    resp = await admin.request("GET", ADMIN_TOKENS_PATH, ok=(200, 404))
    if resp.status_code == 404:
        logger.warning("access review: %s not served (synapse_modules.sessions not loaded); "
                       "admin-issued tokens are not listed", ADMIN_TOKENS_PATH)
        return None
    return tuple(resp.json().get("tokens", []))


async def collect_review(settings: Settings, store: Store, admin: SynapseAdmin, *,
                         actor: str, now: datetime | None = None) -> AccessReview:
    started = time.monotonic()
    now = now or datetime.now(UTC)
    plan_policy = policy_for(settings)
    directory, plan = await read_and_plan(settings, store, admin, read_directory, plan_policy,
                                          now, {})
    accounts = await admin.list_accounts(page_size=1000)
    room_policy = room_sync.load_room_policy(settings)
    managed = room_sync.load_managed(store)
    states = await room_sync.read_room_states(admin, managed, settings.sync.concurrency)
    desired_by_key: dict[str, DesiredRoom] = {}
    if room_policy is not None:
        members = room_sync.members_from(directory, room_sync.stored_accounts(store),
                                         settings, now)
        bot = room_sync.announcement_bot(settings, room_policy)
        desired_by_key = {d.key: d for d in expand(room_policy, members,
                                                   settings.service_user_id,
                                                   bot[0] if bot else None)}
    ignore = {settings.service_user_id}
    reviewed: list[RoomReview] = []
    for key, row in sorted(managed.items()):
        state = states.get(key)
        if state is None:
            continue
        joined = {u for u, m in state.members.items() if m.membership == "join"} - ignore
        desired = desired_by_key.get(key)
        wanted = set(desired.members) if desired is not None else set()
        reviewed.append(RoomReview(
            room_id=row.room_id, kind=row.kind, key=key, name=state.name,
            rule=desired.rule if desired is not None else f"({row.status})",
            joined=len(joined), mandatory=tuple(sorted(joined & wanted)),
            chosen=tuple(sorted(joined - wanted)), missing=tuple(sorted(wanted - joined))))
    managed_ids = {r.room_id for r in managed.values()}
    unmanaged = [RoomReview(room_id=r["room_id"], kind="space" if r.get("room_type") ==
                            "m.space" else "room", key=None, name=r.get("name"), rule=None,
                            joined=int(r.get("joined_local_members") or 0))
                 for r in await _all_rooms(admin) if r["room_id"] not in managed_ids]
    unmanaged.sort(key=lambda r: (-r.joined, r.room_id))
    with store.session() as session:
        names = {u: n for u, n in session.execute(
            select(AccountRow.user_id, AccountRow.display_name)).all() if n}
    review = AccessReview(
        at=now, actor=actor, managed=tuple(reviewed), unmanaged=tuple(unmanaged),
        unexplained=tuple(sorted(plan.unexplained)),
        admins=tuple(sorted(a.user_id for a in accounts if a.admin and not a.deactivated)),
        protected=tuple(sorted(plan_policy.protected)),
        accounts_active=sum(not a.deactivated for a in accounts),
        accounts_deactivated=sum(a.deactivated for a in accounts), names=names,
        admin_tokens=await _admin_tokens(admin))
    logger.info("access review: %d managed and %d other rooms, %d unexplained accounts, "
                "%d admins in %.2f s", len(reviewed), len(unmanaged), len(review.unexplained),
                len(review.admins), time.monotonic() - started)
    return review


def store_review(store: Store, review: AccessReview) -> int:
    with store.session() as session:
        row = AccessReviewRow(at=review.at, actor=review.actor, summary=review.summary(),
                              data=review.to_json())
        session.add(row)
        session.flush()
        repo.append_audit(session, actor=review.actor, action="review.run",
                          target=f"review:{row.id}", now=datetime.now(UTC),
                          details=review.summary())
        return row.id


def latest_review(store: Store) -> AccessReview | None:
    with store.session() as session:
        row = session.scalars(select(AccessReviewRow).order_by(AccessReviewRow.id.desc())
                              .limit(1)).first()
        if row is None:
            return None
        return AccessReview.from_json(row.data, review_id=row.id)


def review_csv_rows(review: AccessReview) -> list[list[str]]:
    """One row per person and room (and per finding): what an auditor filters in a sheet."""
    rows = [["section", "room_id", "room_key", "room_name", "user_id", "name", "why"]]
    for room in review.managed:
        for why, users in (("mandatory", room.mandatory), ("chosen", room.chosen),
                           ("missing", room.missing)):
            rows.extend(["room", room.room_id, room.key or "", room.name or "", u,
                         review.names.get(u, ""), why if why != "mandatory"
                         else f"mandatory: {room.rule}"] for u in users)
    rows.extend(["unmanaged_room", r.room_id, "", r.name or "", "", "",
                 f"{r.joined} joined"] for r in review.unmanaged)
    rows.extend(["unexplained_account", "", "", "", u, "", "no employee record explains it"]
                for u in review.unexplained)
    rows.extend(["server_admin", "", "", "", u, "", "Synapse server admin"]
                for u in review.admins)
    rows.extend(["protected_account", "", "", "", u, "", "service account / protected"]
                for u in review.protected)
    rows.extend(["admin_issued_token", "", "", "", t["acts_as"], review.names.get(t["acts_as"], ""),
                 f"token {t['id']} issued by {t['issued_by']}"]
                for t in review.admin_tokens or ())
    return rows

