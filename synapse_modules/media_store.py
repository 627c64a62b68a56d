"""Database reads and writes of the media gate, through the module API's connection.

State lives in the database, not in process memory, so every worker sees a withdrawal
or a deactivation at once. Two tables of our own:

* `hauspost_media_withdrawn`: files their uploader withdrew. Authoritative: the gate
  refuses these even if deleting the bytes failed or has not happened yet.
* `hauspost_media_leavers`: when the gate first saw an uploader deactivated; their
  files are deleted `leaver_grace_period_days` later.

Synapse's tables are only read (`local_media_repository`, `users`,
`local_current_membership`, `profiles`), with bound parameters only.
"""

from __future__ import annotations

from dataclasses import dataclass

from synapse.module_api import LoggingTransaction, ModuleApi

from synapse_modules.media_policy import MediaFacts

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

# One statement, one round trip per download: the gate sits on the hot path.
_FACTS_SQL = """
SELECT m.user_id,
       EXISTS (SELECT 1 FROM hauspost_media_withdrawn w WHERE w.media_id = m.media_id),
       EXISTS (SELECT 1 FROM users u WHERE u.name = m.user_id AND u.deactivated = 0),
       EXISTS (SELECT 1 FROM users u WHERE u.name = ? AND u.deactivated = 0),
       EXISTS (SELECT 1 FROM local_current_membership a
               JOIN local_current_membership b ON b.room_id = a.room_id
               WHERE a.user_id = m.user_id AND a.membership = 'join'
                 AND b.user_id = ? AND b.membership = 'join')
FROM local_media_repository m
WHERE m.media_id = ?
"""

# Only asked when the main rule refused: profile pictures are rare among files and
# `profiles.avatar_url` has no index.
_PROFILE_PICTURE_SQL = "SELECT 1 FROM profiles WHERE avatar_url = ? LIMIT 1"


@dataclass(frozen=True)
class WithdrawResult:
    found: bool  # False: unknown, or not the requester's file (the caller says 404)
    already_withdrawn: bool


class MediaStore:
    def __init__(self, api: ModuleApi) -> None:
        self._api = api
        self._server_name = api.server_name
        self._schema_ready = False

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

    async def facts(self, media_id: str, requester: str) -> MediaFacts | None:
        await self.ensure_schema()
        mxc = self._mxc(media_id)

        def read(txn: LoggingTransaction) -> MediaFacts | None:
            txn.execute(_FACTS_SQL, (requester, requester, media_id))
            row = txn.fetchone()
            if row is None or row[0] is None:
                return None
            uploader, withdrawn, uploader_active, requester_active, shares = row
            profile_picture = False
            if not (requester == uploader or (uploader_active and shares)):
                txn.execute(_PROFILE_PICTURE_SQL, (mxc,))
                profile_picture = txn.fetchone() is not None
            return MediaFacts(uploader=str(uploader), withdrawn=bool(withdrawn),
                              uploader_active=bool(uploader_active),
                              requester_active=bool(requester_active),
                              shares_room_with_uploader=bool(shares),
                              is_profile_picture=profile_picture)

        return await self._api.run_db_interaction("hauspost_media_facts", read)

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
            txn.execute(
                "SELECT m.media_id FROM local_media_repository m"
                " JOIN hauspost_media_withdrawn w ON w.media_id = m.media_id"
                " UNION"
                " SELECT m.media_id FROM local_media_repository m"
                " JOIN hauspost_media_leavers l ON l.user_id = m.user_id"
                " WHERE l.deactivation_seen_ts <= ?"
                " ORDER BY 1 LIMIT ?",
                (now_ms - grace_ms, limit))
            return [str(row[0]) for row in txn.fetchall()]

        return await self._api.run_db_interaction("hauspost_media_sweep", sweep)
