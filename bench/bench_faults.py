"""The fault suite's long run: seeded SIGKILLs of `hauspost sync`, Synapse and slapd during
a sync of hires, renames (umlauts) and leavers; restart, re-run, check the invariants of
tests/integration/fault_env.py after every iteration. Then seeded SIGKILLs of PostgreSQL
(the store) and `hauspost serve` during SCIM jobs, the service's directory + room sync and
offboardings (HR webhook, `hauspost offboard`), with the invariants of
tests/integration/service_fault_env.py. Both check, after the last sync, that every member of
the managed room has exactly one `room.add_member` row (a join the killed run made in
Synapse without its row is recorded late, marked), no room intent is left and no run still
says "running"; "late rows" counts the rows recorded late.

One slapd and one Synapse (SQLite, LDAP login, as `hauspost init` writes it) for the whole
run; every iteration has its own OU and store. Printed: per target the iterations, how
many kills landed mid-sync (the killed sync did not finish with exit 0), re-runs needed,
and every invariant violation with its seed (none expected).

    .venv/bin/python bench/bench_faults.py [--iterations 51] [--service-iterations 36]
                                           [--seed 1000]

Bounded: about 5 s a sync iteration (the Synapse kills cost a restart), ~5 min for 51;
about 15 s a service iteration (serve starts twice), ~9 min for 36. Measured with the
managed room in the sync iterations: `--iterations 12 --service-iterations 10` took 299 s
on the shared two-core machine (22 of 22 held; 2 joins recorded late, at first-join).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.harness.postgres_server import start_postgres  # noqa: E402
from tests.harness.slapd_server import start_slapd  # noqa: E402
from tests.integration import service_fault_env as sfe  # noqa: E402
from tests.integration.accounts_env import make_env, start_ldap_synapse  # noqa: E402
from tests.integration.fault_env import POINTS, TARGETS, Outcome, run_iteration  # noqa: E402


def service_plan(count: int) -> list[tuple[str, str, str]]:
    """(target, phase, point) for each service iteration: every combination in turn (the
    `accepted` point only where requests are sent: not for the service's own sync)."""
    combos = [(t, ph, pt) for ph in sfe.PHASES for t in sfe.TARGETS for pt in sfe.POINTS
              if not (ph == "sync" and pt == "accepted")]
    return [combos[i % len(combos)] for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=51)
    parser.add_argument("--service-iterations", type=int, default=36)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()
    outcomes: list[Outcome] = []
    service: list[sfe.ServiceOutcome] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        root = Path(tmp)
        slapd = start_slapd(root / "slapd")
        synapse = start_ldap_synapse(root / "synapse", slapd)
        postgres = start_postgres(durable=True)
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
                          f"exit {outcome.killed_exit}, re-runs {outcome.reruns}, late rows "
                          f"{outcome.late}: {flag}", file=sys.stderr)
            for i, (target, phase, point) in enumerate(service_plan(args.service_iterations)):
                seed = args.seed + args.iterations + i
                workdir = root / f"svc{i}"
                workdir.mkdir()
                for fenv in sfe.make_service_env(synapse, slapd, postgres, workdir):
                    s_out = sfe.run_service_iteration(fenv, seed, target, phase, point=point)
                    service.append(s_out)
                    flag = "ok" if not s_out.problems else "VIOLATED"
                    print(f"seed {seed} kill {target:<8} during {phase:<8} ({point:<12}) at "
                          f"{s_out.delay:4.2f} s: accepted {s_out.accepted}, sent again "
                          f"{s_out.resent}, late rows {s_out.late}: {flag}", file=sys.stderr)
        finally:
            postgres.stop()
            synapse.stop()
            slapd.stop()
    by_target: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_target[outcome.target].append(outcome)
    print(f"{len(outcomes)} iterations in {time.monotonic() - started:.0f} s "
          f"(seeds {args.seed}..{args.seed + args.iterations - 1})")
    print(f"{'kill':>8} {'point':>13} {'runs':>5} {'mid-sync':>9} {'re-runs':>8} "
          f"{'late rows':>10} {'violations':>11}")
    for target in TARGETS:
        for point in POINTS:
            rows = [o for o in by_target[target] if o.point == point]
            mid = sum(1 for o in rows if o.killed_exit != 0)
            print(f"{target:>8} {point:>13} {len(rows):>5} {mid:>9} "
                  f"{sum(o.reruns for o in rows):>8} {sum(o.late for o in rows):>10} "
                  f"{sum(len(o.problems) for o in rows):>11}")
    for outcome in outcomes:
        for problem in outcome.problems:
            print(f"seed {outcome.seed} ({outcome.target}): {problem}")
    print(f"{'kill':>8} {'during':>8} {'point':>13} {'runs':>5} {'accepted':>9} "
          f"{'sent again':>11} {'late rows':>10} {'violations':>11}")
    for target, phase, point in dict.fromkeys(service_plan(args.service_iterations)):
        rows = [o for o in service if (o.target, o.phase, o.point) == (target, phase, point)]
        print(f"{target:>8} {phase:>8} {point:>13} {len(rows):>5} "
              f"{sum(o.accepted for o in rows):>9} {sum(o.resent for o in rows):>11} "
              f"{sum(o.late for o in rows):>10} {sum(len(o.problems) for o in rows):>11}")
    for s_out in service:
        for problem in s_out.problems:
            print(f"seed {s_out.seed} ({s_out.target} during {s_out.phase}): {problem}")
    violated = sum(1 for o in outcomes if o.problems) + sum(1 for o in service if o.problems)
    total = len(outcomes) + len(service)
    print(f"invariants held in {total - violated} of {total} iterations "
          f"({len(outcomes)} sync kills, {len(service)} PostgreSQL/serve kills)")


if __name__ == "__main__":
    main()
