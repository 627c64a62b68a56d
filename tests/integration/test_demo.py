"""README command 1, for real: `hauspost demo` gives a running server with the demo company."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

import httpx

from provisioner.cli.demo import DEMO_PASSWORD
from provisioner.homeserver.synapse_process import free_port


def login(url: str, user: str) -> httpx.Response:
    return httpx.post(f"{url}/_matrix/client/v3/login", json={
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
        "password": DEMO_PASSWORD}, timeout=30)


def start_demo(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
               ) -> tuple[subprocess.Popen[str], list[str], threading.Event]:
    """Start a demo command; its stderr lines are collected, `ready` is set at "Stop with
    Ctrl-C." (printed once the homeserver and the demo company are up)."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env if env is not None else dict(os.environ),
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "Stop with Ctrl-C." in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    return proc, lines, ready


def test_demo_runs_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    proc, lines, ready = start_demo(
        [sys.executable, "-m", "provisioner", "demo", "-d", str(tmp_path), "--port", str(port)])
    try:
        assert ready.wait(240), "demo never became ready:\n" + "".join(lines)
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/_matrix/client/versions").status_code == 200
        assert f"  Homeserver URL for Element / Element X: {url}\n" in lines

        anna = login(url, "anna.schmidt")
        assert anna.status_code == 200
        token = anna.json()["access_token"]
        leaver = login(url, "uwe.lange")
        assert leaver.status_code == 403

        headers = {"Authorization": f"Bearer {token}"}
        room = httpx.post(f"{url}/_matrix/client/v3/createRoom", headers=headers,
                          json={"name": "Kaffeeküche"}).json()["room_id"]
        encryption = httpx.get(
            f"{url}/_matrix/client/v3/rooms/{quote(room)}/state/m.room.encryption/",
            headers=headers)
        assert encryption.json() == {"algorithm": "m.megolm.v1.aes-sha2"}

        joined = httpx.get(f"{url}/_matrix/client/v3/joined_rooms", headers=headers).json()
        names = set()
        for room_id in joined["joined_rooms"]:
            resp = httpx.get(f"{url}/_matrix/client/v3/rooms/{quote(room_id)}/state/m.room.name/",
                             headers=headers)
            names.add(resp.json().get("name"))
        # Anna: Management, Berlin, management group; plus her own room.
        assert {"Ankündigungen", "Abteilung Management", "Standort Berlin",
                "Kaffeeküche"} <= names
        assert "Abteilung Sales" not in names
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    deadline = time.monotonic() + 5
    while "Stopped.\n" not in lines and time.monotonic() < deadline:
        time.sleep(0.1)
    assert code == 0
    assert "Stopped.\n" in lines
