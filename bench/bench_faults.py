"""The fault suite's long run: seeded SIGKILLs of `hauspost sync`, Synapse and slapd during
a sync of hires, renames (umlauts) and leavers; restart, re-run, check the invariants of
tests/integration/fault_env.py after every iteration.

One slapd and one Synapse (SQLite, LDAP login, as `hauspost init` writes it) for the whole
run; every iteration has its own OU and store. Printed: per target the iterations, how
many kills landed mid-sync (the killed sync did not finish with exit 0), re-runs needed,
and every invariant violation with its seed (none expected).

    .venv/bin/python bench/bench_faults.py [--iterations 51] [--seed 1000]

Bounded: about 5 s an iteration (the Synapse kills cost a restart), ~5 min for 51.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.slapd_server import start_slapd  # noqa: E402
from tests.integration.accounts_env import make_env, start_ldap_synapse  # noqa: E402
from tests.integration.fault_env import POINTS, TARGETS, Outcome, run_iteration  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=51)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    outcomes: list[Outcome] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        root = Path(tmp)
        slapd = start_slapd(root / "slapd")
        synapse = start_ldap_synapse(root / "synapse", slapd)
        try:
            for i in range(args.iterations):
                seed, target = args.seed + i, TARGETS[i % len(TARGETS)]
                point = POINTS[(i // len(TARGETS)) % len(POINTS)]
                workdir = root / f"it{i}"
                workdir.mkdir()
                for env in make_env(synapse, slapd, workdir):
                    outcome = run_iteration(env, seed, target, point=point)
                    outcomes.append(outcome)
                    flag = "ok" if not outcome.problems else "VIOLATED"
                    print(f"seed {seed} kill {target:<7} ({point:<12}) at {outcome.delay:4.2f} s: "
                          f"killed sync "
                          f"exit {outcome.killed_exit}, re-runs {outcome.reruns}: {flag}",
                          file=sys.stderr)
        finally:
            synapse.stop()
            slapd.stop()
    by_target: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_target[outcome.target].append(outcome)
    print(f"{len(outcomes)} iterations in {time.monotonic() - started:.0f} s "
          f"(seeds {args.seed}..{args.seed + args.iterations - 1})")
    print(f"{'kill':>8} {'point':>13} {'runs':>5} {'mid-sync':>9} {'re-runs':>8} "
          f"{'violations':>11}")
    for target in TARGETS:
        for point in POINTS:
            rows = [o for o in by_target[target] if o.point == point]
            mid = sum(1 for o in rows if o.killed_exit != 0)
            print(f"{target:>8} {point:>13} {len(rows):>5} {mid:>9} "
                  f"{sum(o.reruns for o in rows):>8} {sum(len(o.problems) for o in rows):>11}")
    for outcome in outcomes:
        for problem in outcome.problems:
            print(f"seed {outcome.seed} ({outcome.target}): {problem}")
    violated = sum(1 for o in outcomes if o.problems)
    print(f"invariants held in {len(outcomes) - violated} of {len(outcomes)} iterations")


if __name__ == "__main__":
    main()
