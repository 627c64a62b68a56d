"""The store: migrations on a temp SQLite, append-only audit log, write-once links, run lock."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, inspect, text, update
from sqlalchemy.exc import DatabaseError, IntegrityError

from provisioner.employee import Employee, Status
from provisioner.store import AppendOnlyError, Store, open_store
from provisioner.store import repository as repo
from provisioner.store.change_writer import Change, ChangeWriter
from provisioner.store.database import make_engine
from provisioner.store.migrate import HEADS, current_revisions, head_revisions
from provisioner.store.models import AuditRow, RunLockRow
from provisioner.store.rooms_models import RoomIntentRow
from provisioner.store.run_lock import RunLockedError, run_lock

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(f"sqlite:///{tmp_path / 'state' / 'hauspost.db'}")
    yield s
    s.close()


def _audit(store: Store, **kw: object) -> int:
    with store.session() as s:
        row = repo.append_audit(s, actor=str(kw.get("actor", "alice@host")),
                                action=str(kw.get("action", "account.create")),
                                target=str(kw.get("target", "@anna:corp.test")),
                                now=kw.get("now", NOW),  # type: ignore[arg-type]
                                reason="test", run_id=kw.get("run_id"),  # type: ignore[arg-type]
                                details={"k": "v"})
        s.flush()
        return row.id


def test_migrations_create_every_table_at_head(store: Store) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert {"employees", "accounts", "runs", "audit_log", "run_lock",
            "alembic_version"} <= tables
    assert current_revisions(store.engine) == head_revisions()
    assert head_revisions()  # at least the initial schema


def test_heads_constant_matches_the_migration_scripts() -> None:
    # open_store trusts HEADS to skip importing Alembic when the database is current.
    assert head_revisions() == HEADS


def test_an_outdated_database_is_migrated(tmp_path: Path) -> None:
    from alembic import command

    from provisioner.store.migrate import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "v0002_service")
    assert current_revisions(engine) == {"v0002_service"}
    engine.dispose()
    store = open_store(url)
    assert current_revisions(store.engine) == HEADS
    store.close()


def test_reopening_is_a_no_op_and_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    first = open_store(url)
    _audit(first)
    first.close()
    second = open_store(url)
    with second.session() as s:
        assert len(repo.query_audit(s, repo.AuditQuery())) == 1
    second.close()


def test_audit_update_is_refused_by_the_database(store: Store) -> None:
    audit_id = _audit(store)
    with pytest.raises(DatabaseError, match="audit_log is append-only"):
        with store.engine.begin() as conn:
            conn.execute(update(AuditRow).where(AuditRow.id == audit_id)
                         .values(reason="covered up"))
    with pytest.raises(DatabaseError, match="audit_log is append-only"):
        with store.engine.begin() as conn:
            conn.execute(delete(AuditRow))
    with store.session() as s:
        rows = repo.query_audit(s, repo.AuditQuery())
        assert [(r.id, r.reason) for r in rows] == [(audit_id, "test")]


def test_audit_update_is_refused_with_raw_sqlite(tmp_path: Path) -> None:
    # Even outside our code (sqlite3 shell, another program) the trigger holds.
    path = tmp_path / "raw.db"
    s = open_store(f"sqlite:///{path}")
    _audit(s)
    s.close()
    conn = sqlite3.connect(path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit_log SET actor = 'mallory'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit_log")
    assert conn.execute("SELECT actor FROM audit_log").fetchall() == [("alice@host",)]
    conn.close()


def test_audit_change_through_the_orm_is_refused_in_code(store: Store) -> None:
    audit_id = _audit(store)
    with pytest.raises(AppendOnlyError):
        with store.session() as s:
            row = s.get(AuditRow, audit_id)
            assert row is not None
            row.reason = "changed"
    with pytest.raises(AppendOnlyError):
        with store.session() as s:
            row = s.get(AuditRow, audit_id)
            s.delete(row)
    assert not hasattr(repo, "update_audit") and not hasattr(repo, "delete_audit")


def test_link_is_written_once(store: Store) -> None:
    with store.session() as s:
        repo.insert_link(s, employee_id="E1", user_id="@anna:corp.test", now=NOW, run_id=None,
                         display_name="Anna", email=None)
    # Neither side can be linked a second time.
    with pytest.raises(IntegrityError):
        with store.session() as s:
            repo.insert_link(s, employee_id="E1", user_id="@anna2:corp.test", now=NOW,
                             run_id=None, display_name="Anna", email=None)
    with pytest.raises(IntegrityError):
        with store.session() as s:
            repo.insert_link(s, employee_id="E2", user_id="@anna:corp.test", now=NOW,
                             run_id=None, display_name="Anna", email=None)
    # The ORM refuses to change it ...
    with pytest.raises(AppendOnlyError):
        with store.session() as s:
            row = repo.get_account(s, "@anna:corp.test")
            assert row is not None
            row.employee_id = "E9"
    # ... and so does the database.
    with pytest.raises(DatabaseError, match="never changed"):
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE accounts SET user_id = '@x:corp.test'"))
    with pytest.raises(DatabaseError, match="never changed"):
        with store.engine.begin() as conn:
            conn.execute(text("DELETE FROM accounts"))
    # What we applied may change.
    with store.session() as s:
        row = repo.get_account(s, "@anna:corp.test")
        assert row is not None
        repo.record_deactivated(row, now=NOW, reason="left", hold=True)
    with store.session() as s:
        assert repo.load_links(s)[0].hold is True


def test_audit_query_filters(store: Store) -> None:
    with store.session() as s:
        run = repo.start_run(s, kind="sync", actor="alice@host", now=NOW, dry_run=False,
                             forced=False)
        run_id = run.id
    _audit(store, run_id=run_id)
    _audit(store, action="account.deactivate", target="@bob:corp.test", run_id=run_id,
           now=NOW + timedelta(hours=2))
    _audit(store, actor="bob@host", action="account.offboard", target="@bob:corp.test",
           now=NOW + timedelta(days=2))
    with store.session() as s:
        def q(**kw: object) -> list[str]:
            return [r.action for r in repo.query_audit(s, repo.AuditQuery(**kw))]  # type: ignore[arg-type]
        assert q() == ["account.create", "account.deactivate", "account.offboard"]
        assert q(run_id=run_id) == ["account.create", "account.deactivate"]
        assert q(actor="bob@host") == ["account.offboard"]
        assert q(target="@bob:corp.test") == ["account.deactivate", "account.offboard"]
        assert q(action="account.create") == ["account.create"]
        assert q(since=NOW + timedelta(hours=1)) == ["account.deactivate", "account.offboard"]
        assert q(limit=2) == ["account.deactivate", "account.offboard"]
        # Filter values are bound parameters, never SQL.
        assert q(actor="x' OR '1'='1") == []
        row = repo.query_audit(s, repo.AuditQuery(action="account.create"))[0]
        assert row.at == NOW and row.at.tzinfo is not None
        assert row.details == {"k": "v"}


def test_save_employees_only_writes_changes(store: Store) -> None:
    anna = Employee("E1", "anna", "Anna", "a@x")
    with store.session() as s:
        assert repo.save_employees(s, [anna], source="ldap", now=NOW) == 1
    with store.session() as s:
        assert repo.save_employees(s, [anna], source="ldap", now=NOW) == 0
    with store.session() as s:
        renamed = Employee("E1", "anna", "Anna Weber", "a@x", status=Status.INACTIVE)
        assert repo.save_employees(s, [renamed], source="ldap", now=NOW) == 1
        row = repo.get_employee(s, "E1")
        assert row is not None and row.display_name == "Anna Weber"
        assert row.status == "inactive"


def test_second_concurrent_run_is_refused(store: Store) -> None:
    with run_lock(store, "sync", holder="alice@host"):
        with pytest.raises(RunLockedError, match="another sync run is in progress: alice@host"):
            with run_lock(store, "sync", holder="bob@host"):
                pass  # pragma: no cover
    # Released afterwards.
    with run_lock(store, "sync", holder="bob@host"):
        pass


def test_lock_of_a_dead_process_on_this_host_is_taken_over(store: Store) -> None:
    import socket
    import subprocess

    proc = subprocess.Popen(["true"])  # a PID that has just exited
    proc.wait()
    with store.session() as s:
        s.add(RunLockRow(name="sync", holder="crashed", host=socket.gethostname(),
                         pid=proc.pid, acquired_at=NOW))
    with run_lock(store, "sync", holder="alice@host"):
        with store.session() as s:
            row = s.get(RunLockRow, "sync")
            assert row is not None and row.pid == os.getpid()


def test_a_lock_this_process_could_not_release_is_taken_over_by_it(store: Store) -> None:
    # The store was down when the run ended (a database restart): the row names this live
    # process, which holds no lock any more. Found by the fault suite: `hauspost serve`
    # refused every later sync as "another sync run is in progress" by itself.
    import socket

    with store.session() as s:
        s.add(RunLockRow(name="sync", holder="hauspost-service", host=socket.gethostname(),
                         pid=os.getpid(), acquired_at=NOW))
    with run_lock(store, "sync", holder="hauspost-service"):
        # Held now: a second taker in this process is refused as before.
        with pytest.raises(RunLockedError):
            with run_lock(store, "sync", holder="other"):
                pass  # pragma: no cover


def test_lock_held_on_another_host_is_respected(store: Store) -> None:
    with store.session() as s:
        s.add(RunLockRow(name="sync", holder="carol@ops2", host="ops2.example", pid=1,
                         acquired_at=NOW))
    with pytest.raises(RunLockedError, match=r"carol@ops2 \(pid 1 on ops2.example\)"):
        with run_lock(store, "sync", holder="alice@host"):
            pass  # pragma: no cover


def test_a_bad_store_url_is_a_config_error() -> None:
    from provisioner.errors import ConfigError

    with pytest.raises(ConfigError, match="store.url"):
        open_store("not a url")


def _change(user_id: str, employee_id: str, action: str = "account.create") -> Change:
    return Change(
        link={"user_id": user_id, "employee_id": employee_id, "created_at": NOW,
              "created_run_id": None, "display_name": "X", "email": None, "active": True,
              "hold": False},
        audit={"at": NOW, "actor": "a@h", "action": action, "target": user_id,
               "reason": "test", "run_id": None, "details": {"employee_id": employee_id}})


async def test_change_writer_commits_batches_and_isolates_a_bad_change(store: Store) -> None:
    with store.session() as s:
        repo.insert_link(s, employee_id="E0", user_id="@taken:corp.test", now=NOW,
                         run_id=None, display_name=None, email=None)
    async with ChangeWriter(store) as writer:
        results = await asyncio.gather(
            writer.commit(_change("@a:corp.test", "E1")),
            writer.commit(_change("@taken:corp.test", "E2")),  # link exists: must fail alone
            writer.commit(_change("@b:corp.test", "E3")),
            writer.commit(Change(account_update=("@a:corp.test", {"hold": True}),
                                 audit={"at": NOW, "actor": "a@h", "action": "x",
                                        "target": "@a:corp.test", "reason": None,
                                        "run_id": None, "details": None})),
            return_exceptions=True)
    assert [type(r).__name__ if r else None for r in results] == [
        None, "ChangeNotStoredError", None, None]
    with store.session() as s:
        links = {lk.user_id: lk for lk in repo.load_links(s)}
        assert sorted(links) == ["@a:corp.test", "@b:corp.test", "@taken:corp.test"]
        assert links["@taken:corp.test"].employee_id == "E0"
        assert links["@a:corp.test"].hold is True
        targets = [r.target for r in repo.query_audit(s, repo.AuditQuery())]
        assert sorted(targets) == ["@a:corp.test", "@a:corp.test", "@b:corp.test"]


async def test_change_writer_resolves_a_room_intent_with_its_audit_row(store: Store) -> None:
    """A room intent is deleted in the transaction that writes its audit row: a change in a
    batch that fails keeps its intent (and has no row), the others lose theirs."""
    with store.session() as s:
        run_id = repo.start_run(s, kind="sync", actor="a@h", now=NOW, dry_run=False,
                                forced=False).id
        repo.insert_link(s, employee_id="E0", user_id="@taken:corp.test", now=NOW,
                         run_id=None, display_name=None, email=None)
        for seq in range(3):
            s.add(RoomIntentRow(run_id=run_id, seq=seq, action={"action": "add_member"},
                                created_at=NOW))

    def change(seq: int, link: Change | None = None) -> Change:
        return Change(link=link.link if link else None, intent=(run_id, seq),
                      audit={"at": NOW, "actor": "a@h", "action": "room.add_member",
                             "target": f"@u{seq}:corp.test", "reason": None,
                             "run_id": run_id, "details": None})

    async with ChangeWriter(store) as writer:
        results = await asyncio.gather(
            writer.commit(change(0)),
            writer.commit(change(1, _change("@taken:corp.test", "E2"))),  # fails alone
            writer.commit(change(2)), return_exceptions=True)
    assert [type(r).__name__ if r else None for r in results] == [
        None, "ChangeNotStoredError", None]
    with store.session() as s:
        assert [r.seq for r in s.query(RoomIntentRow).all()] == [1]
        assert sorted(r.target for r in repo.query_audit(s, repo.AuditQuery(
            action="room.add_member"))) == ["@u0:corp.test", "@u2:corp.test"]


def test_change_refuses_link_columns_as_updates() -> None:
    with pytest.raises(ValueError, match="not changeable"):
        Change(account_update=("@a:corp.test", {"employee_id": "E9"}), audit={})


def test_pseudonymisation_is_the_only_change_an_audit_row_ever_sees(store: Store) -> None:
    from provisioner.gdpr.erase import Subject, pseudonymise
    from provisioner.gdpr.pseudonym import Identifiers
    from provisioner.store.gdpr_models import PseudonymisationRow

    now = datetime.now(UTC)
    with store.session() as s:
        repo.insert_link(s, employee_id="E7", user_id="@anna:corp.test", now=now, run_id=None,
                         display_name="Anna Groß", email="anna@corp.test")
        repo.insert_link(s, employee_id="E70", user_id="@bert:corp.test", now=now,
                         run_id=None, display_name="Bert", email=None)
    mine = _audit(store, target="@anna:corp.test", actor="console:@anna:corp.test")
    other = _audit(store, target="@bert:corp.test")
    # Inside the window, still no delete and no change of time or action.
    for statement in (delete(AuditRow).where(AuditRow.id == mine),
                      update(AuditRow).where(AuditRow.id == mine).values(action="x"),
                      update(AuditRow).where(AuditRow.id == mine).values(at=now)):
        with pytest.raises(DatabaseError, match="audit_log is append-only"):
            with store.engine.begin() as conn:
                conn.execute(PseudonymisationRow.__table__.insert().values(started_at=now))
                conn.execute(statement)
    subject = Subject(ids=Identifiers(employee_id="E7", user_id="@anna:corp.test",
                                      display_name="Anna Groß", email="anna@corp.test"),
                      pseudonym="erased-x", account_active=False, account_erased=False,
                      directory_active=False)
    counts = pseudonymise(store, subject, now=now)
    assert counts == {"accounts.user_id": 1, "accounts.employee_id": 1,
                      "accounts.display_name": 1, "accounts.email": 1,
                      "audit_log.target": 1, "audit_log.actor": 1}
    with store.session() as s:
        rows = {r.id: (r.actor, r.target) for r in repo.query_audit(s, repo.AuditQuery())}
        assert rows == {mine: ("console:erased-x", "erased-x"),
                        other: ("alice@host", "@bert:corp.test")}
        account = repo.get_account_by_employee(s, "erased-x")
        assert account is not None and account.erased_at is not None
        assert s.scalar(text("SELECT count(*) FROM pseudonymisation")) == 0
    # The window is closed again.
    with pytest.raises(DatabaseError, match="audit_log is append-only"):
        with store.engine.begin() as conn:
            conn.execute(update(AuditRow).where(AuditRow.id == other).values(target="y"))


def test_save_employees_keeps_the_preferred_language_and_its_changes(store: Store) -> None:
    anna = Employee("E1", "anna", "Anna", "a@x", language="de")
    with store.session() as s:
        assert repo.save_employees(s, [anna], source="ldap", now=NOW) == 1
    with store.session() as s:
        assert repo.save_employees(s, [anna], source="ldap", now=NOW) == 0
        english = Employee("E1", "anna", "Anna", "a@x", language="en")
        assert repo.save_employees(s, [english], source="ldap", now=NOW) == 1
        row = repo.get_employee(s, "E1")
        assert row is not None and row.language == "en"
