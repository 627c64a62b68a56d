"""One sync at a time: a lock row in the store (works for SQLite and a shared PostgreSQL).

The primary key of `run_lock` makes a second INSERT fail, so two runs can't both hold it.
A row left behind by a crashed run on this host (its PID is gone) is taken over; a row
from another host is reported with who holds it since when.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from provisioner.errors import HauspostError
from provisioner.store import Store
from provisioner.store.models import RunLockRow

logger = logging.getLogger(__name__)

EXIT_LOCKED = 7

#: Locks this process holds now. A row naming this process but no lock held here was left
#: behind when the store could not be reached at release (a database restart mid-run).
_HELD: set[str] = set()


class RunLockedError(HauspostError):
    exit_code = EXIT_LOCKED


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_row(name: str, holder: str) -> RunLockRow:
    """A lock row naming this process, for code that takes a lock in a transaction of its
    own (it must delete the row itself when it is done)."""
    return RunLockRow(name=name, holder=holder, host=socket.gethostname(), pid=os.getpid(),
                      acquired_at=datetime.now(UTC))


def holder_gone(row: RunLockRow) -> bool:
    """Whether the process holding `row` has ended (only knowable for this host)."""
    return row.host == socket.gethostname() and row.pid > 0 and not _pid_alive(row.pid)


def _try_insert(store: Store, name: str, holder: str, host: str) -> RunLockRow | None:
    """Insert our row; on conflict return the current holder's row."""
    try:
        with store.session() as session:
            session.add(RunLockRow(name=name, holder=holder, host=host, pid=os.getpid(),
                                   acquired_at=datetime.now(UTC)))
        return None
    except IntegrityError:
        with store.session() as session:
            row = session.get(RunLockRow, name)
            if row is None:
                # Released between our INSERT and this read: report as held, caller retries.
                return RunLockRow(name=name, holder="(just released)", host=host, pid=-1,
                                  acquired_at=datetime.now(UTC))
            session.expunge(row)
            return row


@contextmanager
def run_lock(store: Store, name: str, *, holder: str) -> Iterator[None]:
    """Hold the named lock for the duration of the block, or raise RunLockedError."""
    host = socket.gethostname()
    for _attempt in range(2):
        current = _try_insert(store, name, holder, host)
        if current is None:
            break
        ours_but_released = current.pid == os.getpid() and name not in _HELD
        if current.host == host and current.pid > 0 and (
                ours_but_released or not _pid_alive(current.pid)):
            logger.warning("taking over the %s lock left by process %d (%s)", name,
                           current.pid, "this one, released while the store was unreachable"
                           if ours_but_released else "no longer running")
            with store.session() as session:
                session.execute(delete(RunLockRow).where(RunLockRow.name == name,
                                                         RunLockRow.pid == current.pid))
            continue
        raise RunLockedError(
            f"another {name} run is in progress: {current.holder} (pid {current.pid} on "
            f"{current.host}) since {current.acquired_at:%Y-%m-%d %H:%M:%S} UTC; "
            "try again when it has finished")
    else:
        raise RunLockedError(f"could not take the {name} lock; try again")
    _HELD.add(name)
    try:
        yield
    finally:
        _HELD.discard(name)
        with store.session() as session:
            session.execute(delete(RunLockRow).where(
                RunLockRow.name == name, RunLockRow.pid == os.getpid(), RunLockRow.host == host))
