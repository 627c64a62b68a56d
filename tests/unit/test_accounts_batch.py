"""The batched account path: the module's pure decisions and config, the identity policy's
exception for it, and the provisioner's use of it (a fake Synapse answering per entry)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from synapse.module_api.errors import ConfigError, SynapseError

from provisioner.accounts.apply import ApplyOptions, apply_plan
from provisioner.accounts.plan import CreateAccount, Plan, UpdateEmail
from provisioner.store import open_store
from provisioner.store import repository as repo
from synapse_modules.accounts_batch import (
    BATCH_PATH,
    AccountsBatchConfig,
    entry_problem,
    parse_accounts_batch_config,
    parse_entries,
    requester_allowed,
)
from synapse_modules.identity import refuse_registration

pytestmark = pytest.mark.unit

SERVICE = "@hauspost:x.test"
CONFIG = AccountsBatchConfig(provisioner_users=frozenset({SERVICE}), max_batch=3)


def test_the_identity_policy_lets_exactly_the_batched_path_register() -> None:
    assert refuse_registration(BATCH_PATH) is None
    assert refuse_registration(BATCH_PATH + "x") is not None
    assert refuse_registration("/_synapse/client/hauspost/accounts") is not None


@pytest.mark.parametrize(("user_id", "is_admin", "allowed"), [
    (SERVICE, True, True),
    (SERVICE, False, False),            # demoted service account
    ("@it-admin:x.test", True, False),  # another server admin
    ("@anna:x.test", False, False),
])
def test_only_the_service_account_as_admin(user_id: str, is_admin: bool, allowed: bool) -> None:
    assert requester_allowed(user_id, is_admin, CONFIG) is allowed


@pytest.mark.parametrize(("raw", "problem"), [
    ({"localpart": "anna", "display_name": "Anna", "email": "a@x.test"}, None),
    ({"localpart": "anna", "display_name": "Anna", "email": None, "password": "pw"}, None),
    ({"localpart": "Anna", "display_name": "Anna"}, "localpart must be lower-case"),
    ({"localpart": "an na", "display_name": "Anna"}, "localpart must be lower-case"),
    ({"localpart": "_bot", "display_name": "Bot"}, "localpart may not begin with _"),
    ({"localpart": "anna", "display_name": " "}, "display_name must be"),
    ({"localpart": "anna", "display_name": "A" * 257}, "display_name must be"),
    ({"localpart": "anna", "display_name": "Anna", "email": "anna"}, "email must be"),
    ({"localpart": "anna", "display_name": "Anna", "password": ""}, "password must be"),
    ({"localpart": "anna", "display_name": "Anna", "admin": True}, "unknown keys ['admin']"),
    ("anna", "an entry must be an object"),
])
def test_entry_problems(raw: object, problem: str | None) -> None:
    found = entry_problem(raw)
    assert (found is None) if problem is None else (found or "").startswith(problem)


def test_a_duplicate_is_refused_after_the_first() -> None:
    a = {"localpart": "anna", "display_name": "Anna"}
    out = parse_entries({"accounts": [a, {**a, "display_name": "Zweite"}, {"x": 1}]}, 3)
    assert [p for _, p in out] == [None, "duplicate localpart in this batch",
                                   "unknown keys ['x']"]


@pytest.mark.parametrize("body", [{"accounts": [{}] * 4}, {"accounts": "x"}, []])
def test_a_malformed_or_too_large_batch_is_refused_whole(body: object) -> None:
    with pytest.raises(SynapseError):
        parse_entries(body, 3)


@pytest.mark.parametrize(("raw", "message"), [
    ({}, "provisioner_users: required key is missing"),
    ({"provisioner_users": []}, "expected at least one Matrix ID"),
    ({"provisioner_users": [SERVICE], "max_batch": 0}, "max_batch: expected an integer >= 1"),
    ({"provisioner_users": [SERVICE], "batch": 5}, "batch"),
])
def test_config_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_accounts_batch_config(raw)


class BatchSynapse:
    """Answers the batched path; refuses one named account; counts every call."""

    def __init__(self, refuse: str) -> None:
        self.refuse = refuse
        self.batches: list[list[dict[str, Any]]] = []
        self.emails: list[tuple[str, str | None]] = []

    async def accounts_batch_size(self) -> int:
        return 2

    async def create_accounts_batch(self, entries: list[dict[str, Any]]
                                    ) -> list[dict[str, Any]]:
        self.batches.append(entries)
        return [{"user_id": f"@{e['localpart']}:x.test"} if e["localpart"] != self.refuse
                else {"user_id": f"@{e['localpart']}:x.test", "error": "User ID already taken.",
                      "errcode": "M_USER_IN_USE"} for e in entries]

    async def set_email(self, user_id: str, email: str | None) -> None:
        self.emails.append((user_id, email))


def test_apply_creates_in_batches_and_records_each_created_account(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    with store.session() as s:
        run_id = repo.start_run(s, kind="sync", actor="t@t", now=now, dry_run=False,
                                forced=False).id
    creates = [CreateAccount(f"E{i}", f"@m{i}:x.test", f"Mitarbeiter {i}", f"m{i}@x.test")
               for i in range(5)]
    admin = BatchSynapse(refuse="m3")
    plan = Plan(actions=(*creates, UpdateEmail("E1", "@m1:x.test", "m1@x.test", "neu@x.test"),
                         UpdateEmail("E3", "@m3:x.test", "m3@x.test", "neu3@x.test")))

    result = asyncio.run(apply_plan(plan, admin=admin, store=store,  # type: ignore[arg-type]
                                    run_id=run_id, actor="t@t",
                                    options=ApplyOptions(concurrency=4, progress=False),
                                    clock=lambda: now))

    assert sorted(len(b) for b in admin.batches) == [1, 2, 2]
    assert admin.batches[0][0] == {"localpart": "m0", "display_name": "Mitarbeiter 0",
                                   "email": "m0@x.test"}
    assert dict(result.applied) == {"create": 4, "set_email": 1}
    assert admin.emails == [("@m1:x.test", "neu@x.test")]  # after m1's account exists
    assert [(f.action.user_id, f.error) for f in result.failures] == [
        ("@m3:x.test", "Synapse's batched account path: User ID already taken. (M_USER_IN_USE)"),
        ("@m3:x.test", "skipped: an earlier change failed (Synapse's batched account path: "
                       "User ID already taken. (M_USER_IN_USE))")]
    with store.session() as s:
        links = {lk.user_id: lk for lk in repo.load_links(s)}
        audit = repo.query_audit(s, repo.AuditQuery(run_id=run_id))
    assert sorted(links) == ["@m0:x.test", "@m1:x.test", "@m2:x.test", "@m4:x.test"]
    assert links["@m0:x.test"].display_name == "Mitarbeiter 0"
    creates_audited = sorted((a.target, a.details) for a in audit if a.action == "account.create")
    assert creates_audited[0] == ("@m0:x.test", {
        "employee_id": "E0", "display_name": "Mitarbeiter 0", "email": "m0@x.test",
        "local_password": False})
    assert len(creates_audited) == 4
    store.close()


class AdminApiOnly(BatchSynapse):
    """A Synapse without the module: the probe answers None (404), so one PUT each."""

    def __init__(self) -> None:
        super().__init__(refuse="")
        self.probes = 0
        self.created: list[str] = []

    async def accounts_batch_size(self) -> None:  # type: ignore[override]
        self.probes += 1

    async def create_account(self, user_id: str, **_: object) -> None:
        self.created.append(user_id)


def test_without_the_module_the_admin_api_creates_each_account(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    with store.session() as s:
        run_id = repo.start_run(s, kind="sync", actor="t@t", now=now, dry_run=False,
                                forced=False).id
    admin = AdminApiOnly()
    plan = Plan(actions=tuple(CreateAccount(f"E{i}", f"@m{i}:x.test", f"M {i}")
                              for i in range(3)))

    result = asyncio.run(apply_plan(plan, admin=admin, store=store,  # type: ignore[arg-type]
                                    run_id=run_id, actor="t@t",
                                    options=ApplyOptions(progress=False), clock=lambda: now))

    assert admin.probes == 1  # asked once per run
    assert admin.batches == []
    assert sorted(admin.created) == ["@m0:x.test", "@m1:x.test", "@m2:x.test"]
    assert dict(result.applied) == {"create": 3}
    store.close()
