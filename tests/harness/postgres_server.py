"""A real PostgreSQL on a free loopback port, with its own data dir in a temp dir.

Debian's `postgresql` package may have started a cluster of its own on 5432; this one
is separate (own `initdb`, own port, own socket dir) and a child process of the tests.

PostgreSQL refuses to run as root. When the tests run as root (CI containers), initdb
and postgres run as the `postgres` system user the Debian package creates, through
`runuser -u postgres --`; the data dir is then owned by that user. The cluster trusts
loopback connections (test only: nothing else can reach 127.0.0.1 on a CI machine).

Synapse needs the `C` collation: `initdb --locale=C --encoding=UTF8` makes it the
default of every database created here.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from provisioner.homeserver.synapse_process import free_port

SUPERUSER = "postgres"


class PostgresMissingError(RuntimeError):
    pass


def find_postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin (Debian keeps it off PATH)."""
    root = Path("/usr/lib/postgresql")
    versions = sorted((p for p in root.glob("*/bin") if (p / "postgres").exists()),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    if not versions:
        raise PostgresMissingError(
            "PostgreSQL is not installed: the worker tests need the Debian package "
            "postgresql (`apt-get install -y postgresql`; ./dev installs it)")
    return versions[-1]


def _run_as() -> list[str]:
    """Prefix that drops root to the postgres user; nothing when not root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise PostgresMissingError("running as root but there is no `postgres` user to run "
                                   "PostgreSQL as (the Debian package creates it)") from None
    return ["runuser", "-u", SUPERUSER, "--"]


@dataclass
class PostgresServer:
    root: Path
    port: int
    proc: subprocess.Popen[bytes]
    bin_dir: Path

    host: str = "127.0.0.1"
    user: str = SUPERUSER
    #: Commits are in the WAL before they are acknowledged (synchronous_commit=on), so a
    #: SIGKILL of the server loses no acknowledged transaction (the fault suite).
    durable: bool = False
    #: PostgreSQL's own defaults (fsync, full page writes, synchronous commit): what a
    #: production server runs, for benchmarks that compare it with SQLite's fsync per commit.
    crash_safe: bool = False

    def url(self, database: str, *, driver: str = "postgresql") -> str:
        """A URL for Synapse (`postgresql://`) or SQLAlchemy (`postgresql+psycopg2://`)."""
        return f"{driver}://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        """CREATE DATABASE with C collation (Synapse checks it at start-up)."""
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(host=self.host, port=self.port, user=self.user,
                                dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql.SQL(
                    "CREATE DATABASE {} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' "
                    "TEMPLATE template0").format(sql.Identifier(name)))
        finally:
            conn.close()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = (self.root / "postgres.log").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend at once (a crash, not a shutdown): they
        share the process group the server was started in."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # Every backend gone (and reaped) before a restart, or the new postmaster finds
        # the old one's lock file and shared memory still in use.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        raise RuntimeError("postgres processes survived SIGKILL for 20 s")

    def restart(self, timeout: float = 60.0) -> None:
        """Start again on the same data dir and port (crash recovery replays the WAL)."""
        self.proc = _spawn_postgres(self.bin_dir, self.root, self.port, durable=self.durable,
                                     crash_safe=self.crash_safe)
        _wait_ready(self, timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            # SIGINT = "fast shutdown": roll back open transactions, stop at once. Sent to
            # the postmaster itself: `runuser` does not pass SIGINT on.
            try:
                pid = int((self.root / "data" / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGINT)
            except (OSError, ValueError, IndexError):
                self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(timeout: float = 60.0, *, durable: bool = False,
                   crash_safe: bool = False) -> PostgresServer:
    bin_dir = find_postgres_bin()
    prefix = _run_as()
    # Not under pytest's tmp_path: that is 0700 root and the postgres user can't enter it.
    root = Path(tempfile.mkdtemp(prefix="hauspost-pg-"))
    data, sockets = root / "data", root / "sockets"
    data.mkdir()
    sockets.mkdir()
    if prefix:
        entry = pwd.getpwnam(SUPERUSER)
        for path in (root, data, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    initdb = subprocess.run(  # noqa: S603 - fixed argv
        [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER,
         "--auth=trust", "--locale=C", "--encoding=UTF8", "--no-sync"],
        capture_output=True, text=True, check=False)
    if initdb.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {initdb.stderr.strip() or initdb.stdout.strip()}")
    port = free_port()
    server = PostgresServer(root=root, port=port, bin_dir=bin_dir, durable=durable,
                            crash_safe=crash_safe,
                            proc=_spawn_postgres(bin_dir, root, port, durable=durable,
                                                 crash_safe=crash_safe))
    try:
        _wait_ready(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _spawn_postgres(bin_dir: Path, root: Path, port: int, *,
                    durable: bool, crash_safe: bool = False) -> subprocess.Popen[bytes]:
    prefix = _run_as()
    log = open(root / "postgres.log", "ab")  # noqa: SIM115 - lives as long as the server
    if prefix:
        os.chown(root / "postgres.log", pwd.getpwnam(SUPERUSER).pw_uid, -1)
    return subprocess.Popen(  # noqa: S603 - fixed argv
        [*prefix, str(bin_dir / "postgres"), "-D", str(root / "data"), "-k",
         str(root / "sockets"), "-h", "127.0.0.1", "-p", str(port),
         # Test speed only: an OS crash loses the test database, thrown away anyway. A
         # killed server keeps what it acknowledged only with synchronous_commit on.
         *(["-c", "fsync=off", "-c", f"synchronous_commit={'on' if durable else 'off'}",
            "-c", "full_page_writes=off"] if not crash_safe else []),
         "-c", "max_connections=200"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _wait_ready(server: PostgresServer, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"postgres exited with code {server.proc.returncode}:\n"
                               f"{server.log_tail()}")
        ready = subprocess.run(  # noqa: S603 - fixed argv
            [str(server.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(server.port),
             "-q"], check=False)
        if ready.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"postgres did not accept connections within {timeout:.0f} s")
