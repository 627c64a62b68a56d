"""Database reads and writes of the media gate, through the module API's connection.

State lives in the database, not in process memory, so every worker sees a withdrawal
or a deactivation at once. Two tables of our own:

* `hauspost_media_withdrawn`: who withdrew which file, when (the record of the
  employee's decision). The same transaction marks Synapse's row of the file as
  quarantined, and Synapse refuses quarantined files on every request - so the file
  is unreachable everywhere at once, even before its bytes are deleted.
* `hauspost_media_leavers`: when the gate first saw an uploader deactivated; their
  files are deleted `leaver_grace_period_days` later.

Synapse's tables are read with bound parameters only (`local_media_repository`,
`users`, `profiles`); the only write to one of them is the quarantine mark.

The download hot path reads no table itself: Synapse's own lookup of the file's row
names the uploader, accounts come from Synapse's cached `get_userinfo_by_id`, room
memberships from Synapse's cached `get_rooms_for_user`. Only a refusal asks one more
question (is the file a profile picture?).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from synapse.module_api import LoggingTransaction, ModuleApi

from synapse_modules.media_internals import RoomsForUser
from synapse_modules.media_policy import MediaFacts, may_post_messages

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS hauspost_media_withdrawn (
        media_id TEXT NOT NULL PRIMARY KEY,
        user_id TEXT NOT NULL,
        withdrawn_ts BIGINT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS hauspost_media_leavers (
        user_id TEXT NOT NULL PRIMARY KEY,
        deactivation_seen_ts BIGINT NOT NULL
    )""",
)

WITHDRAWN_MARK = "hauspost: withdrawn by uploader"

_POSTING_STATE = (("m.room.power_levels", ""), ("m.room.create", ""))
# Reading two state events per download costs ~15 % of a small download's CPU; power
# levels change rarely, so a few seconds of staleness is a fair price.
POSTING_RIGHTS_CACHE_MS = 5_000
_POSTING_CACHE_SIZE = 50_000

# profiles.user_id holds the localpart of a local user.
_OWN_PROFILE_PICTURE_SQL = "SELECT 1 FROM profiles WHERE avatar_url = ? AND user_id = ? LIMIT 1"

@dataclass(frozen=True)
class WithdrawResult:
    found: bool  # False: unknown, or not the requester's file (the caller says 404)
    already_withdrawn: bool


class MediaStore:
    def __init__(self, api: ModuleApi, rooms_for_user: RoomsForUser) -> None:
        self._api = api
        self._rooms_for_user = rooms_for_user
        self._server_name = api.server_name
        self._schema_ready = False
        # (room, user) -> (may post, valid until ms). Process-local and short-lived:
        # a power-level change reaches downloads within POSTING_RIGHTS_CACHE_MS.
        self._posting: dict[tuple[str, str], tuple[bool, int]] = {}

    async def ensure_schema(self) -> None:
        if self._schema_ready:
            return

        def create(txn: LoggingTransaction) -> None:
            for statement in _SCHEMA:
                txn.execute(statement)

        await self._api.run_db_interaction("hauspost_media_schema", create)
        self._schema_ready = True

    def _mxc(self, media_id: str) -> str:
        return f"mxc://{self._server_name}/{media_id}"

    async def _is_active(self, user_id: str) -> bool:
        info = await self._api.get_userinfo_by_id(user_id)
        return info is not None and not info.is_deactivated

    async def is_profile_picture(self, media_id: str, uploader: str) -> bool:
        """Is the file its uploader's own current profile picture?

        Not "somebody's": Synapse lets a user without a picture set one once even with
        `enable_set_avatar_url: false`, and anyone could then publish a colleague's file
        by making it their own avatar. Central tools upload a picture as the employee
        (admin login-as token), so it counts as the employee's own.
        """
        mxc = self._mxc(media_id)
        localpart = uploader[1:].split(":", 1)[0]

        def read(txn: LoggingTransaction) -> bool:
            txn.execute(_OWN_PROFILE_PICTURE_SQL, (mxc, localpart))
            return txn.fetchone() is not None

        return await self._api.run_db_interaction("hauspost_media_avatar", read)

    async def _uploader_posts_in_any(self, uploader: str, rooms: frozenset[str]) -> bool:
        # Any order: the first room the uploader may post in settles it.
        for room_id in rooms:
            if await self._may_post(room_id, uploader):
                return True
        return False

    async def _may_post(self, room_id: str, user_id: str) -> bool:
        now = self._api.get_current_time_msec()
        cached = self._posting.get((room_id, user_id))
        if cached is not None and cached[1] > now:
            return cached[0]
        state = await self._api.get_room_state(room_id, _POSTING_STATE)
        power_levels = state.get(("m.room.power_levels", ""))
        create = state.get(("m.room.create", ""))
        creators: set[str] = set()
        if create is not None:
            creators.add(create.sender)
            extra = create.content.get("additional_creators")
            if isinstance(extra, list):
                creators.update(c for c in extra if isinstance(c, str))
        content = power_levels.content if power_levels is not None else None
        allowed = may_post_messages(user_id, content, frozenset(creators))
        if len(self._posting) >= _POSTING_CACHE_SIZE:
            self._posting.clear()
        self._posting[(room_id, user_id)] = (allowed, now + POSTING_RIGHTS_CACHE_MS)
        return allowed

    async def facts(self, media_id: str, uploader: str, requester: str) -> MediaFacts:
        is_uploader = uploader == requester
        # The requester is active: Synapse authenticated them, and deactivation deletes
        # every access token. The uploader is checked: their files close at once.
        uploader_active = is_uploader or await self._is_active(uploader)
        shares = is_uploader or await self._uploader_posts_in_any(
            uploader, (await self._rooms_for_user(uploader)) & (
                await self._rooms_for_user(requester)))
        facts = MediaFacts(uploader=uploader, uploader_active=uploader_active,
                           shares_room_with_uploader=shares, is_profile_picture=False)
        if not (shares and uploader_active):
            # Only the refused ask: the profiles table has no index on avatar_url.
            facts = replace(facts, is_profile_picture=await self.is_profile_picture(
                media_id, uploader))
        return facts

    async def withdraw(self, media_id: str, user_id: str, now_ms: int) -> WithdrawResult:
        """Record that `user_id` withdrew `media_id`, if it is theirs."""
        await self.ensure_schema()

        def write(txn: LoggingTransaction) -> WithdrawResult:
            txn.execute("SELECT user_id FROM hauspost_media_withdrawn WHERE media_id = ?",
                        (media_id,))
            row = txn.fetchone()
            if row is not None:
                return WithdrawResult(found=row[0] == user_id, already_withdrawn=True)
            txn.execute("SELECT user_id FROM local_media_repository WHERE media_id = ?",
                        (media_id,))
            row = txn.fetchone()
            if row is None or row[0] != user_id:
                return WithdrawResult(found=False, already_withdrawn=False)
            txn.execute("INSERT INTO hauspost_media_withdrawn (media_id, user_id, withdrawn_ts)"
                        " VALUES (?, ?, ?)", (media_id, user_id, now_ms))
            txn.execute("UPDATE local_media_repository SET quarantined_by = ?"
                        " WHERE media_id = ? AND user_id = ?",
                        (WITHDRAWN_MARK, media_id, user_id))
            return WithdrawResult(found=True, already_withdrawn=False)

        return await self._api.run_db_interaction("hauspost_media_withdraw", write)

    async def media_due_for_deletion(self, now_ms: int, grace_ms: int,
                                     limit: int = 500) -> list[str]:
        """Notice new leavers, forget reactivated ones; list withdrawn and expired files.

        The grace period counts from the first sweep that saw the deactivation (Synapse
        records no deactivation time), so it is never shorter than configured.
        """
        await self.ensure_schema()

        def sweep(txn: LoggingTransaction) -> list[str]:
            txn.execute(
                "DELETE FROM hauspost_media_leavers WHERE user_id IN"
                " (SELECT name FROM users WHERE deactivated = 0)")
            txn.execute(
                "INSERT INTO hauspost_media_leavers (user_id, deactivation_seen_ts)"
                " SELECT DISTINCT m.user_id, ? FROM local_media_repository m"
                " JOIN users u ON u.name = m.user_id"
                " WHERE u.deactivated = 1 AND NOT EXISTS"
                " (SELECT 1 FROM hauspost_media_leavers l WHERE l.user_id = m.user_id)",
                (now_ms,))
            # A file protected by an admin (Synapse's media protect API, which
            # `hauspost hold set` uses for a legal hold) is never deleted by the sweep.
            txn.execute(
                "SELECT m.media_id FROM local_media_repository m"
                " JOIN hauspost_media_withdrawn w ON w.media_id = m.media_id"
                " WHERE NOT m.safe_from_quarantine"
                " UNION"
                " SELECT m.media_id FROM local_media_repository m"
                " JOIN hauspost_media_leavers l ON l.user_id = m.user_id"
                " WHERE l.deactivation_seen_ts <= ? AND NOT m.safe_from_quarantine"
                " ORDER BY 1 LIMIT ?",
                (now_ms - grace_ms, limit))
            return [str(row[0]) for row in txn.fetchall()]

        return await self._api.run_db_interaction("hauspost_media_sweep", sweep)
