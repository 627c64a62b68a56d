"""`hauspost serve` as a process: durability while Synapse is down, the signed webhook,
health, clean stop on SIGTERM, and refusing to start on bad config."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from provisioner.homeserver.data_dir import InitRequest, init_data_dir
from provisioner.homeserver.synapse_process import free_port
from tests.harness.synapse_server import SynapseServer, start_synapse
from tests.integration.service_env import (
    INITIAL_PASSWORD,
    PATCH_SCHEMA,
    REPO,
    ServiceProcess,
    audit_rows,
    configure_service,
    scim_user,
    settle,
    start_service,
    status_json,
    store_counts,
    wait_for,
)


class Env:
    def __init__(self, synapse: SynapseServer, service: ServiceProcess) -> None:
        self.synapse = synapse
        self.service = service
        self.data_dir = service.data_dir

    def provision(self, localpart: str, employee_id: str) -> tuple[str, str, str]:
        """A SCIM-created person, logged in: (scim id, Matrix ID, access token)."""
        with self.service.scim() as c:
            resp = c.post("/Users", json=scim_user(localpart, external_id=employee_id))
        assert resp.status_code == 201, resp.text
        user_id = self.synapse.mxid(localpart)
        login = wait_for(lambda: (r := self.synapse.login(user_id, INITIAL_PASSWORD))
                         .status_code == 200 and r, timeout=30, what=f"{user_id} can log in")
        return resp.json()["id"], user_id, login.json()["access_token"]

    def token_rejected(self, token: str) -> bool:
        with self.synapse.client(token) as c:
            resp = c.get("/_matrix/client/v3/account/whoami")
        return resp.status_code == 401 and resp.json()["errcode"] == "M_UNKNOWN_TOKEN"

    def jobs(self) -> list[dict[str, Any]]:
        status = status_json(self.data_dir)
        return [*status["open"], *status["recent_done"]]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    workdir = tmp_path_factory.mktemp("service")
    synapse = start_synapse(workdir, modules=[])
    try:
        # Short retry cap: the outage test waits for the retry after Synapse is back.
        env = Env(synapse, start_service(workdir, configure_service(workdir, retry_max=1.0,
                                                                     tick=600)))
        try:
            yield env
        finally:
            # The restart test replaces env.service: stop whichever runs now.
            assert env.service.stop() == 0, env.service.log()
    finally:
        synapse.stop()


def test_health(env: Env) -> None:
    resp = httpx.get(env.service.url + "/health", timeout=10)
    assert resp.status_code == 200
    assert resp.json()["status"] == "ok"
    assert set(resp.json()["queue"]) == {"pending", "failed", "done"}


# --- durability --------------------------------------------------------------------------


def test_leaver_while_synapse_is_down_is_applied_once_when_it_is_back(env: Env) -> None:
    scim_id, user_id, token = env.provision("outage.leaver", "OUT-1")
    env.synapse.process.stop()
    try:
        with env.service.scim() as c:
            resp = c.patch(f"/Users/{scim_id}", json={"schemas": [PATCH_SCHEMA], "Operations": [
                {"op": "replace", "value": {"active": False}}]})
            # The same push again (HR systems retry): accepted, nothing queued twice.
            again = c.patch(f"/Users/{scim_id}", json={"schemas": [PATCH_SCHEMA], "Operations": [
                {"op": "replace", "value": {"active": False}}]})
        assert (resp.status_code, again.status_code) == (200, 200)
        queued = [j for j in status_json(env.data_dir)["open"] if j["target"] == user_id]
        assert [(j["kind"], j["state"]) for j in queued] == [("offboard", "pending")]
        # It is tried (and fails) while Synapse is down, and stays pending.
        wait_for(lambda: [j["attempts"] for j in status_json(env.data_dir)["open"]
                          if j["target"] == user_id] >= [1], timeout=60, interval=0.5,
                 what="a failed attempt while Synapse is down")
        still = [j for j in status_json(env.data_dir)["open"] if j["target"] == user_id]
        assert [j["state"] for j in still] == ["pending"] and still[0]["last_error"]
        assert audit_rows(env.data_dir, action="account.offboard", target=user_id) == []
    finally:
        env.synapse.process.start()
        env.synapse.process.wait_healthy(timeout=90)
    wait_for(lambda: env.token_rejected(token), timeout=60, interval=0.2,
             what="the queued offboarding to end the token after Synapse is back")
    wait_for(lambda: not [j for j in status_json(env.data_dir)["open"] if j["target"] == user_id],
             timeout=30, what="the job to be done")
    done = [j for j in env.jobs() if j["target"] == user_id and j["kind"] == "offboard"]
    assert [(j["state"], j["source"]) for j in done] == [("done", "scim")]
    assert done[0]["attempts"] >= 2
    offboards = audit_rows(env.data_dir, action="account.offboard", target=user_id)
    assert [(r["actor"], r["details"]["already_deactivated"]) for r in offboards] == [
        ("scim:okta-test", False)]
    with env.synapse.admin() as c:
        assert c.get(f"/_synapse/admin/v2/users/{user_id}").json()["deactivated"] is True


# --- webhook -----------------------------------------------------------------------------


def _leaver(employee_id: str, effective: date, **extra: Any) -> dict[str, Any]:
    return {"employee_id": employee_id, "event": "leaver",
            "effective_date": effective.isoformat(), **extra}


def test_signed_leaver_webhook_offboards_at_once_when_the_date_has_passed(env: Env) -> None:
    _, user_id, token = env.provision("hook.leaver", "HOOK-1")
    yesterday = datetime.now(UTC).date() - timedelta(days=2)
    resp = env.service.send_hook(_leaver("HOOK-1", yesterday, event_id="personio-77"))
    assert resp.status_code == 202, resp.text
    wait_for(lambda: env.token_rejected(token), timeout=15, interval=0.05,
             what="the webhook leaver's token to be rejected")
    offboards = audit_rows(env.data_dir, action="account.offboard", target=user_id)
    assert [(r["actor"], r["reason"]) for r in offboards] == [
        ("webhook:hr-webhook", f"leaver reported by HR (last day {yesterday})")]
    accepted = audit_rows(env.data_dir, action="webhook.accepted", target="HOOK-1")
    assert [r["details"]["event_id"] for r in accepted] == ["personio-77"]


def test_future_leaver_is_scheduled_for_the_end_of_the_last_day(env: Env) -> None:
    last_day = datetime.now(UTC).date() + timedelta(days=30)
    resp = env.service.send_hook(_leaver("FUTURE-1", last_day))
    assert resp.status_code == 202
    jobs = [j for j in status_json(env.data_dir)["open"] if j["target"] == "FUTURE-1"]
    # The test data dir has no directory time zone: UTC.
    assert [(j["kind"], j["state"], j["next_attempt_at"]) for j in jobs] == [
        ("offboard", "pending", f"{last_day + timedelta(days=1)}T00:00:00+00:00")]
    shown = subprocess.run([sys.executable, "-m", "provisioner", "status", "-d",
                            str(env.data_dir)], capture_output=True, text=True, cwd=REPO,
                           timeout=60)
    assert shown.returncode == 0
    assert "offboard FUTURE-1 (webhook, 0 tries, next try" in shown.stdout


def test_replayed_webhook_is_refused_and_logged(env: Env) -> None:
    body = _leaver("REPLAY-1", datetime.now(UTC).date() + timedelta(days=10))
    raw = json.dumps(body).encode()
    ts = int(datetime.now(UTC).timestamp())
    first = env.service.send_hook(raw, timestamp=ts - 5)
    second = env.service.send_hook(raw, timestamp=ts)
    third = env.service.send_hook(raw, timestamp=ts)
    assert first.status_code == 202 and second.status_code == 202
    assert third.status_code == 409
    assert third.json() == {"error": "replayed request (signature already seen)"}
    jobs = [j for j in status_json(env.data_dir)["open"] if j["target"] == "REPLAY-1"]
    assert len(jobs) == 1  # the second, distinct push was accepted but de-duplicated
    assert "HR webhook from 127.0.0.1 refused (409): replayed request" in env.service.log()


@pytest.mark.parametrize("attack", ["wrong-secret", "tampered-body", "too-old", "too-new",
                                    "no-signature", "bad-format"])
def test_mis_signed_or_stale_webhook_is_refused_and_logged(env: Env, attack: str) -> None:
    _, user_id, token = env.provision(f"attacked.{attack}", f"ATT-{attack}")
    now = int(datetime.now(UTC).timestamp())
    body = _leaver(f"ATT-{attack}", datetime.now(UTC).date() - timedelta(days=1))
    raw = json.dumps(body).encode()
    before = store_counts(env.data_dir)[1]
    if attack == "wrong-secret":
        resp = env.service.send_hook(raw, secret="not-the-shared-secret-at-all")
    elif attack == "tampered-body":
        from provisioner.service.webhook import signature_for

        signature = signature_for(env.service.config.webhook_secret.encode(), str(now),
                                  raw.replace(b"ATT-", b"ATX-"))
        resp = env.service.send_hook(raw, timestamp=now, signature=signature)
    elif attack == "too-old":
        resp = env.service.send_hook(raw, timestamp=now - 3600)
    elif attack == "too-new":
        resp = env.service.send_hook(raw, timestamp=now + 3600)
    elif attack == "no-signature":
        resp = httpx.post(env.service.url + "/hooks/hr", content=raw, timeout=10)
    else:
        resp = env.service.send_hook(raw, signature="sha256=" + "0" * 64)
    assert resp.status_code == 401, resp.text
    assert store_counts(env.data_dir)[1] == before
    assert not env.token_rejected(token)
    assert audit_rows(env.data_dir, action="account.offboard", target=user_id) == []
    assert "HR webhook from 127.0.0.1 refused (401)" in env.service.log()
    assert env.service.config.webhook_secret not in env.service.log()


@pytest.mark.parametrize(("body", "why"), [
    (b"{not json", "body is not JSON"),
    (b'{"employee_id": "E1", "event": "fired", "effective_date": "2026-01-01"}', "event:"),
    (b'{"employee_id": "E1", "event": "leaver", "effective_date": "soon"}', "effective_date:"),
    (b'{"employee_id": "E1", "event": "leaver", "effective_date": "2026-01-01", "x": 1}',
     "unknown field 'x'"),
])
def test_signed_but_malformed_webhook_is_400(env: Env, body: bytes, why: str) -> None:
    before = store_counts(env.data_dir)[1]
    resp = env.service.send_hook(body)
    assert resp.status_code == 400
    assert resp.json()["error"].startswith(why)
    assert store_counts(env.data_dir)[1] == before


# --- life cycle --------------------------------------------------------------------------


def _fresh_data_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    init_data_dir(InitRequest(server_name="hauspost.test", data_dir=data_dir, port=free_port(),
                              ldap=None))
    return data_dir


def test_sigterm_stops_the_service_cleanly(tmp_path: Path) -> None:
    data_dir = _fresh_data_dir(tmp_path)
    service = start_service(data_dir, configure_service(data_dir))
    assert service.stop(signal.SIGTERM) == 0
    log = service.log()
    assert "stopping: finishing requests in flight" in log and log.rstrip().endswith("stopped")
    assert "Traceback" not in log


def test_missing_token_file_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    data_dir = _fresh_data_dir(tmp_path)
    config = configure_service(data_dir)
    (data_dir / "keys" / "scim_token").unlink()
    service = start_service(data_dir, config, expect_ready=False)
    code = service.process.wait(30)
    lines = [ln for ln in service.log().splitlines() if ln.strip()]
    assert code == 3
    assert lines == [f"Error: {data_dir.resolve() / 'hauspost.yaml'}: service.scim.token_file: "
                     f"{data_dir.resolve() / 'keys' / 'scim_token'} does not exist (create it "
                     "with one secret line, mode 0600)"]


def test_port_in_use_refuses_to_start_with_one_line(tmp_path: Path) -> None:
    data_dir = _fresh_data_dir(tmp_path)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        config = configure_service(data_dir, port=port)
        service = start_service(data_dir, config, expect_ready=False)
        code = service.process.wait(30)
    lines = [ln for ln in service.log().splitlines() if "Error:" in ln]
    assert code == 4
    assert lines == [f"Error: cannot listen on 127.0.0.1:{port}: address already in use "
                     f"(service.listen in {data_dir.resolve() / 'hauspost.yaml'})"]


def test_unknown_service_key_refuses_to_start(tmp_path: Path) -> None:
    data_dir = _fresh_data_dir(tmp_path)
    config = configure_service(data_dir, extra={"listne": "127.0.0.1:1"})
    service = start_service(data_dir, config, expect_ready=False)
    assert service.process.wait(30) == 3
    assert "service.listne: unknown key" in service.log()


def test_joiner_without_a_directory_fails_for_good_and_is_shown(env: Env) -> None:
    # This data dir has no directory source: the sync a joiner asks for can't run, and
    # retrying would not help.
    resp = env.service.send_hook({"employee_id": "JOIN-1", "event": "joiner",
                                  "effective_date": datetime.now(UTC).date().isoformat()})
    assert resp.status_code == 202
    (job_id,) = resp.json()["jobs"]
    failed = wait_for(lambda: [j for j in status_json(env.data_dir)["open"]
                               if j["id"] == job_id and j["state"] == "failed"],
                      timeout=30, what="the sync job to fail")
    assert failed[0]["kind"] == "sync" and "directory" in failed[0]["last_error"]
    rows = [r for r in audit_rows(env.data_dir, action="service.job_failed")
            if r["details"]["job_id"] == job_id]
    assert [r["actor"] for r in rows] == ["webhook:hr-webhook"]
    shown = subprocess.run([sys.executable, "-m", "provisioner", "status", "-d",
                            str(env.data_dir)], capture_output=True, text=True, cwd=REPO,
                           timeout=60)
    assert f"failed  #{job_id} sync directory (webhook, 1 tries, needs attention)" in shown.stdout


def test_a_restarted_service_keeps_scim_users_and_queued_changes(env: Env) -> None:
    scim_id, _, _ = env.provision("survivor", "SURV-1")
    last_day = datetime.now(UTC).date() + timedelta(days=60)
    assert env.service.send_hook(_leaver("LATER-1", last_day)).status_code == 202
    pending = [j["id"] for j in status_json(env.data_dir)["open"] if j["target"] == "LATER-1"]
    assert env.service.stop() == 0
    env.service = start_service(env.data_dir, env.service.config)
    with env.service.scim() as c:
        got = c.get(f"/Users/{scim_id}")
    assert (got.status_code, got.json()["userName"], got.json()["active"]) == (200, "survivor", True)
    assert [j["id"] for j in status_json(env.data_dir)["open"]
            if j["target"] == "LATER-1"] == pending


def test_a_passed_leave_date_offboards_between_syncs(env: Env) -> None:
    from provisioner.employee import Employee
    from provisioner.settings import load_settings
    from provisioner.store import open_store
    from provisioner.store import repository as repo

    _, user_id, token = env.provision("leave.date", "LD-1")
    last_day = datetime.now(UTC).date() - timedelta(days=2)
    # What the last directory read recorded for this employee.
    store = open_store(load_settings(env.data_dir).store_url)
    try:
        with store.session() as session:
            repo.save_employees(session, [Employee("LD-1", "leave.date", "Leave Date",
                                                   leave_date=last_day)],
                                source="test", now=datetime.now(UTC))
    finally:
        store.close()
    # The leave-date check runs when the service starts, then every tick_seconds (10 min
    # in this module): a restart makes it run now.
    assert env.service.stop() == 0
    env.service = start_service(env.data_dir, env.service.config)
    wait_for(lambda: env.token_rejected(token), timeout=30, interval=0.1,
             what="the leave-date offboarding")
    offboards = audit_rows(env.data_dir, action="account.offboard", target=user_id)
    assert [(r["actor"], r["reason"]) for r in offboards] == [
        ("hauspost-service", f"leave date {last_day} has passed")]
    # Later ticks queue nothing more: the account is inactive now.
    settle(env.data_dir)
    jobs = [j for j in env.jobs() if j["target"] == user_id and j["kind"] == "offboard"]
    assert [(j["source"], j["state"]) for j in jobs] == [("schedule", "done")]


def test_periodic_sync_and_a_joiner_webhook_read_the_directory(tmp_path: Path) -> None:
    import yaml

    synapse = start_synapse(tmp_path / "data", modules=[])
    try:
        data_dir = synapse.data_dir
        (data_dir / "hr").mkdir()
        csv = data_dir / "hr" / "people.csv"
        csv.write_text("id;login;name\nHR-1;hr.first;First Joiner\n", encoding="utf-8")
        settings_path = data_dir / "hauspost.yaml"
        settings = yaml.safe_load(settings_path.read_text(encoding="utf-8"))
        settings["directory"] = {"sources": ["hr_csv"], "time_zone": "UTC",
                                 "hr_csv": {"path": "hr/people.csv", "columns": {
                                     "employee_id": "id", "localpart": "login",
                                     "display_name": "name"}}}
        settings_path.write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        config = configure_service(data_dir, extra={"sync_interval_minutes": 60})
        service = start_service(data_dir, config)
        try:
            # The directory-sync schedule runs once at start, then hourly.
            wait_for(lambda: synapse.login(synapse.mxid("hr.first"), INITIAL_PASSWORD)
                     .status_code == 200, timeout=60, what="the scheduled sync's account")
            csv.write_text("id;login;name\nHR-1;hr.first;First Joiner\n"
                           "HR-2;hr.second;Second Joiner\n", encoding="utf-8")
            resp = service.send_hook({"employee_id": "HR-2", "event": "joiner",
                                      "effective_date": datetime.now(UTC).date().isoformat()})
            assert resp.status_code == 202
            wait_for(lambda: synapse.login(synapse.mxid("hr.second"), INITIAL_PASSWORD)
                     .status_code == 200, timeout=60, what="the joiner's account")
            creators = {r["target"]: r["actor"] for r in audit_rows(data_dir,
                                                                    action="account.create")}
            assert creators == {synapse.mxid("hr.first"): "hauspost-service",
                                synapse.mxid("hr.second"): "webhook:hr-webhook"}
        finally:
            assert service.stop() == 0, service.log()
    finally:
        synapse.stop()
