"""Paged LDAP read of 10,000 employees: our LdapSource vs a bare ldap3 paged search.

One slapd is loaded offline (slapadd) with N inetOrgPerson employees and groupOfNames
groups. Each round runs, on the same server:

- baseline: ldap3's own paged search of the same attributes, values left undecoded;
- source:   LdapSource.read() with group_mode none (connect, bind, page, map, check);
- groups:   LdapSource.read() with groupOfNames membership (one more paged search).

Rounds alternate so machine noise hits all alike; figures are medians.

    .venv/bin/python bench/bench_ldap_read.py [--employees 10000] [--rounds 3] [--page 1000]

Bounded: about 3 x rounds reads of N entries, ~20-40 s for 10,000.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import ldap3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioner.directory.config import LdapSourceOptions  # noqa: E402
from provisioner.directory.ldap_source import LdapSource  # noqa: E402
from provisioner.settings import LdapSettings  # noqa: E402
from tests.harness.ldap_seed import groups_ldif, make_people, people_ldif  # noqa: E402
from tests.harness.slapd_server import (  # noqa: E402
    ADMIN_DN,
    ADMIN_PASSWORD,
    GROUPS_DN,
    PEOPLE_DN,
    start_slapd,
)

ATTRIBUTES = ["employeeNumber", "uid", "cn", "mail", "departmentNumber", "l", "manager"]


def bare_paged_read(uri: str, page: int) -> int:
    conn = ldap3.Connection(ldap3.Server(uri, get_info=ldap3.NONE), ADMIN_DN, ADMIN_PASSWORD,
                            auto_bind=True, read_only=True)
    count = sum(1 for item in conn.extend.standard.paged_search(
        PEOPLE_DN, "(objectClass=inetOrgPerson)", ldap3.SUBTREE, attributes=ATTRIBUTES,
        paged_size=page, generator=True) if item.get("type") == "searchResEntry")
    conn.unbind()
    return count


def timed(label: str, func: Callable[[], int], results: dict[str, list[float]],
          expected: int) -> None:
    start = time.perf_counter()
    count = func()
    results[label].append(time.perf_counter() - start)
    if count != expected:
        raise SystemExit(f"{label}: read {count} entries, expected {expected}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--employees", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--page", type=int, default=1000)
    args = parser.parse_args()
    n = args.employees

    people = make_people(n)
    # 20 groups: every employee in "Alle", the rest by department-sized slices.
    groups = {"Alle": [p.uid for p in people]}
    for g in range(19):
        groups[f"Team {g:02d}"] = [p.uid for p in people[g::19]]

    with tempfile.TemporaryDirectory(prefix="bench-ldap-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        server = start_slapd(work / "slapd", seed_ldif=people_ldif(people) + groups_ldif(groups))
        load = time.perf_counter() - t0
        try:
            password_file = work / "bind_password"
            password_file.write_text(ADMIN_PASSWORD, encoding="utf-8")
            plain = LdapSettings(uri=server.uri, base_dn=PEOPLE_DN, bind_dn=ADMIN_DN,
                                 bind_password_file=password_file,
                                 source=LdapSourceOptions(paged_size=args.page,
                                                          group_mode="none"))
            with_groups = replace(plain, source=replace(plain.source,
                                                        group_mode="group_of_names",
                                                        groups_base_dn=GROUPS_DN))

            def source_read(settings: LdapSettings) -> int:
                read = LdapSource(settings).read()
                if not read.complete or read.problems:
                    raise SystemExit(f"unexpected problems: {read.problems[:3]}")
                return len(read.employees)

            results: dict[str, list[float]] = {"baseline": [], "source": [], "groups": []}
            bare_paged_read(server.uri, args.page)  # warm slapd's caches once for all
            for _ in range(args.rounds):
                timed("baseline", lambda: bare_paged_read(server.uri, args.page), results, n)
                timed("source", lambda: source_read(plain), results, n)
                timed("groups", lambda: source_read(with_groups), results, n)
        finally:
            server.stop()

    print(f"slapd started with {n} employees + {len(groups)} groups (slapadd) in {load:.2f} s")
    print(f"paged read, page size {args.page}, median of {args.rounds} rounds:")
    base = statistics.median(results["baseline"])
    for label, text in (("baseline", "bare ldap3 paged search"),
                        ("source", "LdapSource.read(), no groups"),
                        ("groups", "LdapSource.read(), groupOfNames")):
        t = statistics.median(results[label])
        print(f"  {text:<34} {t:6.2f} s  {n / t:8.0f} entries/s  "
              f"ratio to baseline {base / t:.2f}")


if __name__ == "__main__":
    main()
