"""An interrupted `hauspost announce`: how it is shown, the refusal of a second sending, and
what `--resume` decides to post (the parts without a bot; the kill itself is tested with
real processes in tests/integration/test_announce_resume.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nio import MegolmEvent

from provisioner.announcements.compose import AnnouncementRequest, Attachment
from provisioner.announcements.report import build_report, render_text
from provisioner.announcements.resume import (
    FoundPost,
    ResumeError,
    missing_pieces,
    post_of,
)
from provisioner.announcements.send import Piece, refuse_if_unfinished
from provisioner.announcements.sending_state import (
    UnfinishedAnnouncementError,
    lock_name,
    shown_status,
    statuses,
)
from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.store.announcement_models import AnnouncementPostRow, AnnouncementRow
from provisioner.store.models import RunLockRow
from provisioner.store.run_lock import RunLockedError, lock_row

BOT = "@hauspost-bot:x.test"
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
DEAD_PID = 2 ** 22 + 17  # above pid_max on this kind of machine: no such process


class Ev:
    """What nio gives for a decrypted event: sender, event id, source, timestamp."""

    def __init__(self, sender: str, content: dict[str, Any], event_id: str = "$e") -> None:
        self.sender, self.event_id = sender, event_id
        self.source = {"content": content}
        self.server_timestamp = int(T0.timestamp() * 1000)


def _text(announcement_id: int) -> dict[str, Any]:
    return {"msgtype": "m.text", "body": "Hallo",
            "de.hauspost.announcement": {"id": announcement_id}}


def test_post_of_finds_only_the_bot_s_post_of_this_announcement() -> None:
    found = post_of(Ev(BOT, _text(12), "$t"), "!r", BOT, 12)
    assert found is not None
    assert (found.room_id, found.event_id, found.kind, found.content) == (
        "!r", "$t", "text", _text(12))
    file = {"msgtype": "m.file", "body": "plan.pdf", "de.hauspost.announcement": {"id": 12}}
    attachment = post_of(Ev(BOT, file), "!r", BOT, 12)
    assert attachment is not None and attachment.kind == "attachment"
    assert post_of(Ev(BOT, _text(11)), "!r", BOT, 12) is None  # another announcement
    assert post_of(Ev("@anna:x.test", _text(12)), "!r", BOT, 12) is None  # not the bot's
    assert post_of(Ev(BOT, {"msgtype": "m.text", "body": "Erinnerung"}), "!r", BOT, 12) is None


def test_a_bot_event_it_cannot_decrypt_stops_the_resume() -> None:
    event = MegolmEvent.from_dict({
        "type": "m.room.encrypted", "sender": BOT, "event_id": "$x",
        "origin_server_ts": 0, "content": {
            "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AAAA", "sender_key": "k",
            "session_id": "s", "device_id": "D"}})
    assert isinstance(event, MegolmEvent)
    with pytest.raises(ResumeError, match=r"\$x in !r cannot be decrypted"):
        post_of(event, "!r", BOT, 12)


def _found(room: str, kind: str, content: dict[str, Any]) -> FoundPost:
    return FoundPost(room, f"${room}{kind}", kind, content, T0)


def test_missing_pieces_reuses_what_one_room_has_for_the_others() -> None:
    text, file = _text(12), {"msgtype": "m.file", "de.hauspost.announcement": {"id": 12}}
    found = [_found("!a", "text", text), _found("!a", "attachment", file),
             _found("!b", "text", text)]
    todo = missing_pieces(["!a", "!b", "!c"], found, text=None, attachment=None,
                          had_attachment=True, announcement_id=12)
    assert todo == {"!b": [Piece("attachment", file)],
                    "!c": [Piece("text", text), Piece("attachment", file)]}
    # Everything already there: nothing to post.
    assert missing_pieces(["!a"], found, text=None, attachment=None, had_attachment=True,
                          announcement_id=12) == {}


def test_missing_pieces_needs_the_text_again_when_no_room_has_it() -> None:
    with pytest.raises(ResumeError, match="same --body or --body-file"):
        missing_pieces(["!a"], [], text=None, attachment=None, had_attachment=False,
                       announcement_id=12)
    given = _text(12)
    assert missing_pieces(["!a"], [], text=given, attachment=None, had_attachment=False,
                          announcement_id=12) == {"!a": [Piece("text", given)]}
    with pytest.raises(ResumeError, match="same --attach"):
        missing_pieces(["!a"], [], text=given, attachment=None, had_attachment=True,
                       announcement_id=12)
    pdf = Attachment("plan.pdf", b"%PDF", "application/pdf")
    assert missing_pieces(["!a"], [], text=given, attachment=pdf, had_attachment=True,
                          announcement_id=12) == {
        "!a": [Piece("text", given), Piece("attachment", None, pdf)]}


# --- the store: status shown, second sending refused --------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'h.db'}")
    yield s
    s.close()


def _announcement(store: Store, *, status: str, pid: int | None, title: str = "Umzug",
                  posted: tuple[str, ...] = ()) -> int:
    with store.session() as session:
        row = AnnouncementRow(created_at=T0, actor="comms@x", sender=BOT,
                              target={"targets": ["department:Ops"]}, title=title,
                              requires_ack=True, deadline=T0 + timedelta(days=2),
                              status=status, recipients_total=6)
        session.add(row)
        session.flush()
        if pid is not None:
            lock = lock_row(lock_name(row.id), "comms@x")
            lock.pid = pid
            session.add(lock)
        repo.append_audit(session, actor="comms@x", action="announcement.send",
                          target=f"announcement:{row.id}", now=T0, reason="test",
                          details={"rooms": ["!a", "!b"], "attachment": None})
        for n, room in enumerate(posted):
            session.add(AnnouncementPostRow(announcement_id=row.id, room_id=room,
                                            event_id=f"$p{row.id}-{n}", kind="text",
                                            sent_at=T0))
        return row.id


def test_a_sending_announcement_whose_process_is_gone_shows_as_interrupted(
        store: Store) -> None:
    live = _announcement(store, status="sending", pid=os.getpid(), title="A")
    dead = _announcement(store, status="sending", pid=DEAD_PID, title="B", posted=("!a",))
    sent = _announcement(store, status="sent", pid=None, title="C")
    with store.session() as session:
        assert statuses(session, [(live, "sending"), (dead, "sending"), (sent, "sent")]) == {
            live: "sending", dead: "interrupted", sent: "sent"}
    assert shown_status("sending", None) == "interrupted"  # no lock row: nobody sends it
    other_host = RunLockRow(name="x", holder="h", host="elsewhere", pid=DEAD_PID,
                            acquired_at=T0)
    assert shown_status("sending", other_host) == "sending"  # cannot be checked from here

    report = build_report(store, dead)
    assert (report.status, report.rooms, report.posted_in) == ("interrupted", ("!a", "!b"),
                                                               ("!a",))
    assert (f"  status        interrupted while sending: posted in 1 of 2 room(s) as far as "
            f"recorded; finish it with hauspost announce --resume {dead}"
            in render_text(report))
    assert report.to_json()["status"] == "interrupted"
    assert build_report(store, sent).status_text() == ""
    assert "status" not in render_text(build_report(store, sent))
    assert "beim Senden unterbrochen" in build_report(store, dead).status_text("de")


def _request(title: str) -> AnnouncementRequest:
    return AnnouncementRequest(body=f"# {title}\n\ntext", deadline=T0 + timedelta(days=2))


def test_the_same_announcement_is_not_sent_again_while_one_is_unfinished(
        store: Store) -> None:
    dead = _announcement(store, status="sending", pid=DEAD_PID, title="Umzug")
    with pytest.raises(UnfinishedAnnouncementError) as refused:
        refuse_if_unfinished(store, _request("Umzug"), ["department:Ops"])
    assert refused.value.exit_code == 8
    assert str(refused.value) == (
        f"announcement {dead} with this title to department:Ops did not finish sending "
        "(interrupted) and may already be in some rooms: finish it with "
        f"`hauspost announce --resume {dead}` instead of sending it again")
    # Another title, other targets or another deadline is another announcement.
    refuse_if_unfinished(store, _request("Umzug II"), ["department:Ops"])
    refuse_if_unfinished(store, _request("Umzug"), ["all"])
    refuse_if_unfinished(store, AnnouncementRequest(body="# Umzug"), ["department:Ops"])


def test_a_failed_one_is_refused_too_and_one_being_sent_is_waited_for(store: Store) -> None:
    failed = _announcement(store, status="failed", pid=None, title="Failed")
    with pytest.raises(UnfinishedAnnouncementError, match=f"--resume {failed}"):
        refuse_if_unfinished(store, _request("Failed"), ["department:Ops"])
    _announcement(store, status="sending", pid=os.getpid(), title="Live")
    with pytest.raises(RunLockedError, match="is being sent right now"):
        refuse_if_unfinished(store, _request("Live"), ["department:Ops"])
    _announcement(store, status="sent", pid=None, title="Done")
    refuse_if_unfinished(store, _request("Done"), ["department:Ops"])
