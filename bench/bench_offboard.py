"""Offboarding latency: from `hauspost offboard` to the person's token being rejected.

One Synapse (SQLite, as `hauspost init` writes it). For each of N employees, logged in
with a password and member of a room:

- baseline: a bare `POST /_synapse/admin/v1/deactivate/<user>` with httpx (another user),
  then the token checked with /whoami;
- command:  the real `hauspost offboard <mxid> --no-wait` console script, timed from
  spawning the process until /whoami answers M_UNKNOWN_TOKEN (includes Python start-up,
  loading the config and the store);
- library:  `provisioner.accounts.offboard.offboard` in-process, until the token is rejected.

    .venv/bin/python bench/bench_offboard.py [--users 20]

Bounded: about 3 x N logins and deactivations, ~1 min for the default.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.accounts.offboard import offboard  # noqa: E402
from provisioner.homeserver.synapse_admin import SynapseAdmin  # noqa: E402
from provisioner.settings import load_settings  # noqa: E402
from provisioner.store import open_store  # noqa: E402
from tests.harness.synapse_server import SynapseServer, TestUser, start_synapse  # noqa: E402

HAUSPOST = str(Path(sys.executable).parent / "hauspost")


def token_rejected(server: SynapseServer, token: str) -> bool:
    with server.client(token) as c:
        resp = c.get("/_matrix/client/v3/account/whoami")
    return resp.status_code == 401 and resp.json().get("errcode") == "M_UNKNOWN_TOKEN"


def prepare(server: SynapseServer, prefix: str, n: int, room_id: str) -> list[TestUser]:
    users = []
    for i in range(n):
        user = server.create_user(f"{prefix}{i:03d}")
        assert server.join(user, room_id).status_code == 200
        users.append(user)
    return users


def summary(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{name:<8} median {statistics.median(ms):7.1f} ms   max {max(ms):7.1f} ms   "
            f"(n={len(ms)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=20)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-offboard-") as tmp:
        work = Path(tmp)
        server = start_synapse(work / "synapse", modules=[],
                               extra_config={"background_updates": {"sleep_enabled": False}})
        try:
            host = server.create_user("host")
            room_id = server.create_room(host, name="All hands", preset="public_chat")
            baseline_users = prepare(server, "base", args.users, room_id)
            command_users = prepare(server, "cmd", args.users, room_id)
            library_users = prepare(server, "lib", args.users, room_id)
            settings = load_settings(server.data_dir)
            env = {**os.environ, "HAUSPOST_ACTOR": "bench"}

            baseline, command, library = [], [], []
            for base_user, cmd_user, lib_user in zip(baseline_users, command_users,
                                                     library_users, strict=True):
                t0 = time.monotonic()
                with server.admin() as c:
                    c.post(f"/_synapse/admin/v1/deactivate/{quote(base_user.user_id)}",
                           json={"erase": False}).raise_for_status()
                assert token_rejected(server, base_user.token)
                baseline.append(time.monotonic() - t0)

                t0 = time.monotonic()
                subprocess.run([HAUSPOST, "-q", "offboard", "-d", str(server.data_dir),
                                cmd_user.user_id, "--no-wait"], check=True, env=env,
                               capture_output=True)
                assert token_rejected(server, cmd_user.token)
                command.append(time.monotonic() - t0)

                async def in_process(user: TestUser = lib_user) -> None:
                    store = open_store(settings.store_url)
                    async with SynapseAdmin(settings.homeserver_url, server.admin_token) as a:
                        await offboard(a, store, user.user_id, server_name=server.server_name,
                                       protected=frozenset({server.admin_user_id}),
                                       reason="bench", erase=False, actor="bench",
                                       wait_for_rooms=False)
                    store.close()

                t0 = time.monotonic()
                asyncio.run(in_process())
                assert token_rejected(server, lib_user.token)
                library.append(time.monotonic() - t0)

            print(summary("bare", baseline))
            print(summary("command", command))
            print(summary("library", library))
            print()
            print(f"offboarding latency, command to token rejected: median "
                  f"{statistics.median(command) * 1000:.0f} ms, max {max(command) * 1000:.0f} ms "
                  f"(target <= 1000 ms); {statistics.median(command) / statistics.median(baseline):.1f}x "
                  f"a bare admin-API deactivate ({statistics.median(baseline) * 1000:.0f} ms); "
                  f"in-process {statistics.median(library) * 1000:.0f} ms")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
