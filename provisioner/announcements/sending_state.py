"""Whether an announcement is still being sent, or its sending was interrupted.

`hauspost announce` stores the announcement (status `sending`) together with a lock row
`announcement:<id>` naming its process, in one transaction, and deletes that row in the
transaction that sets the final status (`sent` or `failed`). So a `sending` announcement
whose lock row names a process that is gone (SIGKILL, a crash, the machine restarted) was
**interrupted**: some of its rooms may hold the post, the store does not know them all,
and nobody will finish it but `hauspost announce --resume ID` (announcements/resume.py).
A lock held on another host cannot be checked from here: shown as `sending`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioner.announcements.messages import text
from provisioner.errors import HauspostError
from provisioner.store import Store
from provisioner.store.announcement_models import AnnouncementPostRow, AnnouncementRow
from provisioner.store.models import AuditRow, RunLockRow
from provisioner.store.run_lock import holder_gone

#: Exit code of a plain re-send while the same announcement is unfinished.
EXIT_UNFINISHED = 8

#: Statuses after which `--resume` finishes the sending.
UNFINISHED = ("interrupted", "failed")


class UnfinishedAnnouncementError(HauspostError):
    """The same announcement did not finish sending: resume it instead of sending twice."""

    exit_code = EXIT_UNFINISHED


def lock_name(announcement_id: int) -> str:
    return f"announcement:{announcement_id}"


def resume_command(announcement_id: int) -> str:
    return f"hauspost announce --resume {announcement_id}"


def shown_status(status: str, lock: RunLockRow | None) -> str:
    """The stored status, or `interrupted` for a `sending` one whose process is gone."""
    if status == "sending" and (lock is None or holder_gone(lock)):
        return "interrupted"
    return status


def statuses(session: Session, rows: Iterable[tuple[int, str]]) -> dict[int, str]:
    """(announcement id, stored status) -> id: shown status (one query for the locks of
    those still sending)."""
    rows = list(rows)
    sending = [lock_name(i) for i, status in rows if status == "sending"]
    locks = {lock.name: lock for lock in session.scalars(
        select(RunLockRow).where(RunLockRow.name.in_(sending)))} if sending else {}
    return {i: shown_status(status, locks.get(lock_name(i))) for i, status in rows}


@dataclass(frozen=True)
class Progress:
    """How far an announcement got, as the store knows it."""

    status: str
    #: The rooms it was to be posted in (from its `announcement.send` audit row).
    rooms: tuple[str, ...]
    #: The rooms where its text post is recorded.
    posted: tuple[str, ...]

    @property
    def finished(self) -> bool:
        return self.status not in ("sending", *UNFINISHED)

    def describe(self, announcement_id: int, language: str = "en") -> str:
        """One line for a person deciding what to do; empty once it was sent."""
        if self.finished:
            return ""
        return text(f"status_{self.status}", language, posted=len(self.posted),
                    rooms=len(self.rooms), command=resume_command(announcement_id))


def progress(session: Session, row: AnnouncementRow, status: str | None = None) -> Progress:
    status = status or statuses(session, [(row.id, row.status)])[row.id]
    return Progress(status=status, rooms=tuple(planned_rooms(session, row.id)),
                    posted=tuple(sorted({r for (r,) in session.execute(
                        select(AnnouncementPostRow.room_id).where(
                            AnnouncementPostRow.announcement_id == row.id,
                            AnnouncementPostRow.kind == "text"))})))


def planned_rooms(session: Session, announcement_id: int) -> list[str]:
    """The rooms `hauspost announce` chose, as its `announcement.send` row records them."""
    details = session.scalar(select(AuditRow.details).where(
        AuditRow.action == "announcement.send",
        AuditRow.target == f"announcement:{announcement_id}").order_by(AuditRow.id).limit(1))
    rooms = (details or {}).get("rooms") or []
    return [str(r) for r in rooms]


def unfinished_like(store: Store, *, title: str, targets: Sequence[str],
                    deadline: datetime | None) -> tuple[int, str] | None:
    """(id, shown status) of an announcement with this title, targets and deadline that did
    not finish sending (interrupted, failed, or being sent now), or None."""
    with store.session() as session:
        rows = session.scalars(select(AnnouncementRow).where(
            AnnouncementRow.title == title,
            AnnouncementRow.status.in_(("sending", "failed")))
            .order_by(AnnouncementRow.id.desc())).all()
        same = [r for r in rows if sorted(r.target.get("targets", [])) == sorted(targets)
                and r.deadline == deadline]
        shown = statuses(session, [(r.id, r.status) for r in same])
    return (same[0].id, shown[same[0].id]) if same else None
