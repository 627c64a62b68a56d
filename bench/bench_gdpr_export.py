"""Art. 15 export of a person in 200 rooms with 50,000 events: time and peak memory.

One Synapse configured by `hauspost init` (our modules, SQLite) on loopback. The subject
creates N rooms (encrypted, as every room is) and sends E encrypted events into each
(Megolm-shaped ciphertext, as a client would); a colleague sends E/10 into each, which the
export must leave out. Then, in the same run:

- baseline: a bare read of the subject's events (the admin API's /messages with a sender
  filter, paged, nothing kept) in this process;
- export: `hauspost gdpr export` as a subprocess, wall time and its peak RSS
  (getrusage of the child).

Printed: events, archive size, both times, their ratio, the child's peak memory, and the
targets (under 60 s, under 200 MB).

    .venv/bin/python bench/bench_gdpr_export.py [--rooms 200] [--events 250]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.employee import Employee  # noqa: E402
from provisioner.settings import load_settings  # noqa: E402
from provisioner.store import open_store  # noqa: E402
from provisioner.store import repository as repo  # noqa: E402
from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer, start_synapse  # noqa: E402

CONCURRENCY = 16


def account(server: SynapseServer, localpart: str, name: str) -> str:
    user_id = server.mxid(localpart)
    with server.admin() as c:
        c.put(f"/_synapse/admin/v2/users/{quote(user_id)}",
              json={"password": TEST_PASSWORD, "displayname": name}).raise_for_status()
    return str(server.login(user_id).json()["access_token"])


def ciphertext(n: int) -> dict[str, object]:
    return {"algorithm": "m.megolm.v1.aes-sha2", "sender_key": "Q" * 43,
            "session_id": "S" * 43, "device_id": "BENCH",
            "ciphertext": secrets.token_urlsafe(96) + f"{n:06d}"}


async def seed(server: SynapseServer, subject: str, colleague: str, colleague_id: str,
               rooms: int, events: int) -> int:
    limit = asyncio.Semaphore(CONCURRENCY)
    sent = 0

    async def call(client: httpx.AsyncClient, method: str, path: str,
                   body: dict[str, object]) -> dict[str, object]:
        async with limit:
            for _ in range(5):
                resp = await client.request(method, path, json=body)
                if resp.status_code != 429:
                    break
                await asyncio.sleep(1)
            resp.raise_for_status()
            data: dict[str, object] = resp.json()
            return data

    headers_s = {"Authorization": f"Bearer {subject}"}
    headers_c = {"Authorization": f"Bearer {colleague}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers_s, timeout=120) as s, \
            httpx.AsyncClient(base_url=server.url, headers=headers_c, timeout=120) as c:
        room_ids = [str((await call(s, "POST", "/_matrix/client/v3/createRoom",
                                    {"invite": [colleague_id], "name": f"Projekt {i}"}))
                        ["room_id"]) for i in range(rooms)]
        await asyncio.gather(*(call(c, "POST", f"/_matrix/client/v3/join/{quote(r)}", {})
                               for r in room_ids))

        async def send(client: httpx.AsyncClient, room_id: str, n: int) -> None:
            nonlocal sent
            await call(client, "PUT", f"/_matrix/client/v3/rooms/{quote(room_id)}/send/"
                                      f"m.room.encrypted/b{n}-{secrets.token_hex(4)}",
                       ciphertext(n))
            sent += 1

        jobs = [send(s, r, n) for r in room_ids for n in range(events)]
        jobs += [send(c, r, n) for r in room_ids for n in range(max(1, events // 10))]
        started = time.monotonic()
        for i in range(0, len(jobs), 2000):
            await asyncio.gather(*jobs[i:i + 2000])
            print(f"  seeded {sent} events ({sent / (time.monotonic() - started):.0f}/s)",
                  file=sys.stderr)
    return sent


async def baseline(server: SynapseServer, user_id: str) -> tuple[int, float]:
    started = time.monotonic()
    count = 0
    event_filter = quote(json.dumps({"senders": [user_id]}))
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=120) as c:
        rooms = (await c.get(f"/_synapse/admin/v1/users/{quote(user_id)}/joined_rooms")
                 ).json()["joined_rooms"]
        for room_id in rooms:
            token = None
            while True:
                path = (f"/_synapse/admin/v1/rooms/{quote(room_id)}/messages?dir=f&limit=500"
                        f"&filter={event_filter}" + (f"&from={quote(token)}" if token else ""))
                body = (await c.get(path)).json()
                count += len(body.get("chunk", []))
                token = body.get("end")
                if not body.get("chunk") or not token:
                    break
    return count, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=200)
    parser.add_argument("--events", type=int, default=250)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        work = Path(tmp)
        server = start_synapse(work / "synapse")
        try:
            subject = account(server, "anna", "Anna Groß")
            colleague = account(server, "bert", "Bert Ørsted")
            t0 = time.monotonic()
            total = asyncio.run(seed(server, subject, colleague, server.mxid("bert"),
                                     args.rooms, args.events))
            print(f"seeded {total} events in {args.rooms} rooms in "
                  f"{time.monotonic() - t0:.0f} s", file=sys.stderr)
            data = work / "data"
            data.mkdir()
            base = load_settings(server.data_dir)
            (data / "hauspost.yaml").write_text(yaml.safe_dump({
                "server_name": server.server_name,
                "homeserver": {"url": server.url, "config": str(base.homeserver_config)},
                "service_account": {"localpart": base.service_localpart,
                                    "token_file": str(base.service_token_file)},
                "store": {"url": f"sqlite:///{data / 'hauspost.db'}"}}), encoding="utf-8")
            store = open_store(load_settings(data).store_url)
            now = datetime.now(UTC)
            with store.session() as session:
                repo.save_employees(session, [Employee("E1", "anna", "Anna Groß",
                                                       department="Vertrieb")],
                                    source="bench", now=now)
                repo.insert_link(session, employee_id="E1", user_id=server.mxid("anna"),
                                 now=now, run_id=None, display_name="Anna Groß", email=None)
            store.close()
            events, base_seconds = asyncio.run(baseline(server, server.mxid("anna")))
            out = work / "auskunft.zip"
            started = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "provisioner", "gdpr", "-d", str(data),
                                   "export", "E1", "--out", str(out)],
                                  capture_output=True, text=True, check=False,
                                  env={**os.environ, "HAUSPOST_ACTOR": "bench"})
            seconds = time.monotonic() - started
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            with zipfile.ZipFile(out) as zf:
                exported = sum(1 for name in zf.namelist() if name.startswith("messages/")
                               for line in zf.read(name).splitlines() if line)
            size_mb = out.stat().st_size / 1e6
        finally:
            server.stop()
    print(f"Art. 15 export: {args.rooms} rooms, {total} encrypted messages sent; the subject "
          f"has {events} events (messages + room set-up), the colleague's are left out")
    print(f"baseline (bare paged read of the subject's events): {base_seconds:6.1f} s")
    print(f"hauspost gdpr export:                               {seconds:6.1f} s "
          f"({seconds / base_seconds:.2f}x baseline), {exported} events, {size_mb:.1f} MB ZIP")
    print(f"peak memory of the export process: {peak_mb:.0f} MB")
    print(f"targets: under 60 s -> {'met' if seconds < 60 else 'MISSED'}; under 200 MB -> "
          f"{'met' if peak_mb < 200 else 'MISSED'}; every event of the subject exported -> "
          f"{'yes' if exported == events else 'NO'}")


if __name__ == "__main__":
    main()
