"""Shared set-up for the sync / offboard tests: a Synapse with LDAP login against the session
slapd, and per test an OU of its own, a store of its own and a hauspost.yaml for the CLI.

Tests share the Synapse (fresh logins per test) but never an OU or a store, so each test's
directory is exactly the people it seeded.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from provisioner.homeserver.module_configs import ldap_login
from provisioner.settings import LdapSettings, Settings, load_settings
from provisioner.store import Store, open_store
from provisioner.store import repository as repo
from provisioner.sync.run import SyncOutcome, run_sync
from tests.harness.ldap_seed import SeedPerson, add_ou, add_people, unique_name
from tests.harness.slapd_server import ADMIN_DN, ADMIN_PASSWORD, PEOPLE_DN, SlapdServer
from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer, start_synapse

REPO = Path(__file__).resolve().parents[2]
HAUSPOST = [str(Path(sys.executable).parent / "hauspost")]


def ldap_login_settings(slapd: SlapdServer, keys: Path) -> LdapSettings:
    keys.mkdir(parents=True, exist_ok=True)
    password_file = keys / "ldap_bind_password"
    password_file.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
    os.chmod(password_file, 0o600)
    return LdapSettings(uri=slapd.uri, base_dn=PEOPLE_DN, bind_dn=ADMIN_DN,
                        bind_password_file=password_file)


def wait_for_background_updates(server: SynapseServer, timeout: float = 180.0) -> None:
    """Wait until Synapse has finished the schema background updates of a fresh database.

    Until then reactivation fails on SQLite (500: the unique index on profiles.full_user_id
    that `activate_account`'s upsert needs is built by a background update); see
    docs/accounts.md "Rehire".
    """
    deadline = time.monotonic() + timeout
    idle = 0
    with server.admin() as c:
        while time.monotonic() < deadline:
            status = c.get("/_synapse/admin/v1/background_updates/status").json()
            # Twice idle in a row: between two updates the status is briefly empty too.
            idle = idle + 1 if not status.get("current_updates") else 0
            if idle == 2:
                return
            time.sleep(0.3)
    raise RuntimeError("Synapse's background updates did not finish in time")


def start_ldap_synapse(workdir: Path, slapd: SlapdServer) -> SynapseServer:
    """Synapse exactly as `hauspost init --ldap-…` configures it (LDAP login on); test-only:
    background updates without pauses, so a fresh database is ready in seconds."""
    ldap = ldap_login_settings(slapd, workdir / "ldap-keys")
    # Only the LDAP login module: these tests are about accounts, and stay independent of
    # the policy modules (tested on their own).
    server = start_synapse(workdir / "synapse", ldap=ldap, modules=[ldap_login(ldap)],
                           extra_config={"background_updates": {"sleep_enabled": False}})
    try:
        wait_for_background_updates(server)
    except BaseException:
        server.stop()
        raise
    return server


@dataclass
class AccountsEnv:
    synapse: SynapseServer
    slapd: SlapdServer
    workdir: Path
    ou: str
    prefix: str
    settings: Settings
    store: Store

    def person(self, n: int, **kw: Any) -> SeedPerson:
        uid = kw.pop("uid", f"{self.prefix}-{n:03d}")
        return SeedPerson(uid=uid, cn=kw.pop("cn", f"Person {n:03d} {self.prefix}"),
                          mail=kw.pop("mail", f"{uid}@hauspost.test"),
                          employee_number=kw.pop("employee_number", f"{self.prefix}-E{n:03d}"),
                          **kw)

    def seed(self, people: list[SeedPerson]) -> None:
        conn = self.slapd.connection()
        try:
            add_people(conn, people, self.ou)
        finally:
            conn.unbind()

    def mxid(self, person: SeedPerson) -> str:
        return self.synapse.mxid(person.uid.lower())

    def sync(self, *, dry_run: bool = False, force: bool = False,
             now: datetime | None = None) -> SyncOutcome:
        return asyncio.run(run_sync(self.settings, self.synapse.admin_token, dry_run=dry_run,
                                    force=force, now=now, actor="pytest@test", progress=False,
                                    store=self.store))

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The real `hauspost` console script against this test's hauspost.yaml."""
        # -q belongs to the group: `hauspost -q sync -d …`.
        top = [a for a in args if a == "-q"]
        rest = [a for a in args if a != "-q"]
        return subprocess.run([*HAUSPOST, *top, *rest[:1], "-d", str(self.workdir), *rest[1:]],
                              capture_output=True, text=True, timeout=300, check=False,
                              env={**os.environ, "HAUSPOST_ACTOR": "cli-test@test"})

    def audit(self, **query: Any) -> list[Any]:
        with self.store.session() as s:
            return list(repo.query_audit(s, repo.AuditQuery(**query)))

    def login(self, user_id: str, password: str = TEST_PASSWORD) -> httpx.Response:
        return self.synapse.login(user_id, password)

    def whoami(self, token: str) -> httpx.Response:
        with self.synapse.client(token) as c:
            return c.get("/_matrix/client/v3/account/whoami")

    def account(self, user_id: str) -> dict[str, Any]:
        with self.synapse.admin() as c:
            resp = c.get(f"/_synapse/admin/v2/users/{user_id}")
            resp.raise_for_status()
            data: dict[str, Any] = resp.json()
            return data


def make_env(synapse: SynapseServer, slapd: SlapdServer, workdir: Path, *,
             sync: dict[str, Any] | None = None,
             directory: dict[str, Any] | None = None,
             ldap: dict[str, Any] | None = None) -> Iterator[AccountsEnv]:
    """A fresh OU and store, and a hauspost.yaml for them; `ldap` adds or overrides keys of
    its `ldap:` section (e.g. member_of group mode)."""
    prefix = unique_name("p")
    conn = slapd.connection()
    try:
        ou = add_ou(conn, prefix)
    finally:
        conn.unbind()
    base = load_settings(synapse.data_dir)
    assert base.ldap is not None and base.ldap.bind_password_file is not None
    doc: dict[str, Any] = {
        "server_name": synapse.server_name,
        "homeserver": {"url": base.homeserver_url, "config": str(base.homeserver_config)},
        "service_account": {"localpart": base.service_localpart,
                            "token_file": str(base.service_token_file)},
        "store": {"url": f"sqlite:///{workdir / 'hauspost.db'}"},
        "ldap": {"uri": base.ldap.uri, "base_dn": ou, "bind_dn": base.ldap.bind_dn,
                 "bind_password_file": str(base.ldap.bind_password_file),
                 "group_mode": "none", "disabled_attribute": "employeeType",
                 "disabled_values": ["disabled"], **(ldap or {})},
        "directory": directory or {"sources": ["ldap"], "time_zone": "Europe/Berlin"},
    }
    if sync:
        doc["sync"] = sync
    (workdir / "hauspost.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    settings = load_settings(workdir)
    store = open_store(settings.store_url)
    env = AccountsEnv(synapse=synapse, slapd=slapd, workdir=workdir, ou=ou, prefix=prefix,
                      settings=settings, store=store)
    try:
        yield env
    finally:
        store.close()


def with_settings(env: AccountsEnv, **changes: Any) -> None:
    env.settings = replace(env.settings, **changes)


@pytest.fixture(scope="module", name="ldap_synapse")
def ldap_synapse_fixture(slapd: SlapdServer,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[SynapseServer]:
    server = start_ldap_synapse(tmp_path_factory.mktemp("ldap-synapse"), slapd)
    yield server
    server.stop()


@pytest.fixture(name="env")
def env_fixture(ldap_synapse: SynapseServer, slapd: SlapdServer, tmp_path: Path) -> Iterator[AccountsEnv]:
    yield from make_env(ldap_synapse, slapd, tmp_path)
