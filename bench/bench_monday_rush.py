"""The Monday-morning rush: 300 employees behind one office NAT sign in and sync at 8:00.

Two Synapses in the same run, both configured by `hauspost init` (SQLite, our modules), on
loopback, so every login comes from one address like an office behind NAT:

- hauspost: the login limits `init` writes (300 in a burst per address, then one every 2 s;
  wrong passwords 5 per account, then one every 10 s);
- baseline: Synapse's default login limits (5 per address, then one every ~5.5 min).

For each: N accounts made through the admin API, then N clients at once (bounded
concurrency) each log in with a password on a fresh device and run their first /sync.
Printed: success rate, p50/p95 of login + first sync, wall time, and the 429s.

    .venv/bin/python bench/bench_monday_rush.py [--people 300] [--concurrency 16]

Bounded: 2 x N logins, about a minute in all on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.homeserver.homeserver_yaml import (  # noqa: E402
    HomeserverOptions,
    render_homeserver_yaml,
)
from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer, start_synapse  # noqa: E402


def init_login_limits() -> dict[str, Any]:
    rendered = yaml.safe_load(render_homeserver_yaml(
        HomeserverOptions(server_name="x.test", data_dir=Path("/nonexistent"))))
    limits: dict[str, Any] = rendered["rc_login"]
    return limits


def start(workdir: Path, login_limits: dict[str, Any] | None) -> SynapseServer:
    def edit(config: dict[str, Any]) -> None:
        if login_limits is None:
            config.pop("rc_login", None)  # Synapse's defaults
        else:
            config["rc_login"] = login_limits

    return start_synapse(workdir, edit=edit)


def create_accounts(server: SynapseServer, people: list[str], concurrency: int) -> None:
    def create(localpart: str) -> int:
        with server.admin() as c:
            return c.put(f"/_synapse/admin/v2/users/{quote(server.mxid(localpart))}",
                         json={"password": TEST_PASSWORD, "displayname": localpart}).status_code

    with ThreadPoolExecutor(concurrency) as pool:
        codes = Counter(pool.map(create, people))
    assert set(codes) == {201}, codes


def morning(server: SynapseServer, localpart: str) -> tuple[int, int, float]:
    """Login on a fresh device and the first sync: (login status, sync status, seconds)."""
    started = time.monotonic()
    with httpx.Client(base_url=server.url, timeout=60) as c:
        login = c.post("/_matrix/client/v3/login", json={
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
            "password": TEST_PASSWORD, "initial_device_display_name": "Montag 8:00"})
        if login.status_code != 200:
            return login.status_code, 0, time.monotonic() - started
        token = login.json()["access_token"]
        sync = c.get("/_matrix/client/v3/sync", params={"timeout": 0},
                     headers={"Authorization": f"Bearer {token}"})
    return 200, sync.status_code, time.monotonic() - started


def rush(server: SynapseServer, people: list[str], concurrency: int) -> dict[str, Any]:
    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda lp: morning(server, lp), people))
    wall = time.monotonic() - started
    ok = [secs for login, sync, secs in results if login == 200 and sync == 200]
    quantiles = statistics.quantiles(ok, n=20) if len(ok) >= 2 else [float("nan")] * 19
    return {"ok": len(ok), "n": len(people), "wall": wall,
            "p50": statistics.median(ok) if ok else float("nan"), "p95": quantiles[18],
            "codes": Counter(login for login, _, _ in results)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    people = [f"mitarbeiter{i:04d}" for i in range(args.people)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-rush-") as tmp:
        for name, limits in (("hauspost", init_login_limits()), ("baseline", None)):
            server = start(Path(tmp) / name, limits)
            try:
                create_accounts(server, people, 8)
                rows.append((name, rush(server, people, args.concurrency)))
            finally:
                server.stop()
    print(f"{args.people} employees, one address, concurrency {args.concurrency}")
    print(f"{'limits':>9} {'success':>8} {'rate':>6} {'p50 s':>7} {'p95 s':>7} {'wall s':>7}  "
          "login answers")
    for name, r in rows:
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(r["codes"].items()))
        print(f"{name:>9} {r['ok']:>4}/{r['n']:<3} {r['ok'] / r['n']:>6.1%} {r['p50']:>7.2f} "
              f"{r['p95']:>7.2f} {r['wall']:>7.1f}  {codes}")
    ours, base = rows[0][1], rows[1][1]
    print(f"success ratio hauspost/baseline: {ours['ok'] / max(base['ok'], 1):.1f}x; "
          f"target: 100% within 60 s -> "
          f"{'met' if ours['ok'] == ours['n'] and ours['wall'] <= 60 else 'NOT met'}")


if __name__ == "__main__":
    main()
