"""Data subject rights against real Synapse, slapd and real E2EE clients: the Art. 15
export holds exactly one person's data, erasure pseudonymises the store without losing an
audit row, legal holds stop erasure, the leaver timeline erases after its period."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from nio import AsyncClient

from provisioner.settings import load_settings
from tests.harness.browser import chromium_page
from tests.harness.e2ee import close_all, e2ee_login, send_content, send_encrypted_file, send_text
from tests.harness.ldap_seed import delete_person
from tests.harness.slapd_server import SlapdServer
from tests.harness.synapse_server import TEST_PASSWORD, SynapseServer, TestUser
from tests.integration.console_env import POLICY
from tests.integration.test_org_rooms import RoomsEnv, make_rooms_env

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def env(synapse: SynapseServer, slapd: SlapdServer,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[RoomsEnv]:
    workdir = Path(tmp_path_factory.mktemp("gdpr"))
    for env in make_rooms_env(synapse, slapd, workdir, POLICY):
        token_file = workdir / "keys" / "service_account_token"
        shutil.copy(env.settings.service_token_file, token_file)
        os.chmod(token_file, 0o600)
        doc = yaml.safe_load((workdir / "hauspost.yaml").read_text(encoding="utf-8"))
        doc["service_account"]["token_file"] = str(token_file)
        doc["data_protection"] = {"erase_after_days": 30}
        (workdir / "hauspost.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True),
                                               encoding="utf-8")
        env.settings = load_settings(workdir)
        people = [env.person(1, cn="Anna Łukasiewicz-Groß", department="Vertrieb"),
                  env.person(2, cn="Bert Ørsted", department="Vertrieb"),
                  env.person(3, cn="Carla Núñez", department="Lager")]
        env.seed(people)
        assert env.sync().status == "ok"
        yield env


def _people(env: RoomsEnv) -> dict[str, Any]:
    return {p: env.person(n) for p, n in (("anna", 1), ("bert", 2), ("carla", 3))}


def _ids(env: RoomsEnv, key: str) -> dict[str, str]:
    person = _people(env)[key]
    assert person.employee_number and person.mail
    return {"employee_id": person.employee_number, "user_id": env.mxid(person),
            "email": person.mail}


async def _client(env: RoomsEnv, key: str) -> AsyncClient:
    user = TestUser(user_id=_ids(env, key)["user_id"], password=TEST_PASSWORD, token="",
                    device_id="")
    return await e2ee_login(env.synapse, user, env.workdir / "clients")


def _zip_text(path: Path) -> dict[str, str]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name).decode("utf-8") for name in zf.namelist()}


async def test_export_holds_exactly_one_persons_data(env: RoomsEnv, tmp_path: Path) -> None:
    anna, bert = _ids(env, "anna"), _ids(env, "bert")
    room_id = env.room_id("department/Vertrieb")
    clients = [await _client(env, "anna"), await _client(env, "bert")]
    try:
        mine = [await send_text(clients[0], room_id, f"Angebot {i} für Kunde Süd")
                for i in range(3)]
        file_event, mxc = await send_encrypted_file(clients[0], room_id, b"%PDF-1.4 contract")
        theirs = [await send_text(clients[1], room_id, "Bert schreibt etwas Eigenes")]
        proc = await asyncio.to_thread(
            env.cli, "announce", "--to", "department:Vertrieb", "--body", "Inventur am Freitag",
            "--ack-by", (datetime.now(UTC) + timedelta(days=2)).isoformat(), "--json")
        assert proc.returncode == 0, proc.stderr
        sent = json.loads(proc.stdout)
        (ann_room,) = sent["rooms"]
        await clients[0].sync(timeout=1000)
        await clients[0].join(ann_room)
        await send_content(clients[0], ann_room, "m.reaction", {"m.relates_to": {
            "rel_type": "m.annotation", "event_id": sent["event_ids"][0], "key": "✅"}})
        tick = await asyncio.to_thread(env.cli, "tick")
        assert tick.returncode == 0, tick.stderr
    finally:
        await close_all(*clients)

    out = tmp_path / "auskunft-anna.zip"
    proc = env.cli("gdpr", "export", anna["employee_id"], "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"Wrote {out} (")
    files = _zip_text(out)
    manifest = json.loads(files["manifest.json"])
    assert manifest["employee_id"] == anna["employee_id"]
    assert {e["name"] for e in manifest["entries"]} >= {
        "directory.json", "account.json", "rooms.jsonl", "files.json",
        "acknowledgements.json", "history.jsonl", "actions.jsonl", "summary.html"}
    record = json.loads(files["directory.json"])["record"]
    assert (record["employee_id"], record["display_name"], record["department"]) == (
        anna["employee_id"], "Anna Łukasiewicz-Groß", "Vertrieb")
    account = json.loads(files["account.json"])
    assert account["user"]["name"] == anna["user_id"] and len(account["devices"]) >= 1
    rooms = [json.loads(line) for line in files["rooms.jsonl"].splitlines()]
    (sales,) = [r for r in rooms if r["room_id"] == room_id]
    assert sales["encrypted"] is True and sales["membership"]["membership"] == "join"
    events = [json.loads(line) for line in files[sales["messages_file"]].splitlines()]
    assert {e["sender"] for e in events} == {anna["user_id"]}
    event_ids = {e["event_id"] for e in events}
    assert set(mine) | {file_event} <= event_ids
    assert not set(theirs) & event_ids
    assert all(e["type"] != "m.room.message" for e in events)  # ciphertext only
    media = json.loads(files["files.json"])
    assert mxc.rsplit("/", 1)[1] in {m["media_id"] for m in media}
    (ack,) = json.loads(files["acknowledgements.json"])
    assert ack["acknowledged_via"] == "reaction" and ack["acknowledged_at"] is not None
    history = [json.loads(line) for line in files["history.jsonl"].splitlines()]
    assert history and all(h["target"] in (anna["employee_id"], anna["user_id"])
                           for h in history)
    assert {"account.create"} <= {h["action"] for h in history}
    # Nobody else's data: not Bert's ID, name, e-mail or words anywhere in the archive.
    everything = "\n".join(files.values())
    for needle in (bert["user_id"], bert["employee_id"], bert["email"], "Bert Ørsted",
                   "Bert schreibt"):
        assert needle not in everything, needle
    (row,) = env.audit(action="gdpr.export")
    assert row.target == anna["employee_id"]
    # The summary opens in a browser.
    summary = tmp_path / "summary.html"
    summary.write_text(files["summary.html"], encoding="utf-8")
    async with chromium_page(locale="de-DE") as (page, outside):
        await page.goto(summary.as_uri())
        assert "Anna Łukasiewicz-Groß" in await page.inner_text("body")
        assert "Chiffretext" in await page.inner_text("body")
    assert outside == []


def test_bad_input_is_one_line_and_changes_nothing(env: RoomsEnv, tmp_path: Path) -> None:
    anna = _ids(env, "anna")
    taken = tmp_path / "exists.zip"
    taken.write_bytes(b"keep me")
    before = len(env.audit())
    proc = env.cli("gdpr", "export", anna["employee_id"], "--out", str(taken))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"Error: {taken} exists: give a new file name " \
                                  "(nothing is overwritten)"
    assert taken.read_bytes() == b"keep me" and list(tmp_path.iterdir()) == [taken]
    unknown = env.cli("gdpr", "export", "E-NOBODY", "--out", str(tmp_path / "x.zip"))
    assert unknown.returncode == 3
    assert unknown.stderr.strip() == "Error: no employee or account 'E-NOBODY' in the store"
    active = env.cli("gdpr", "erase", anna["employee_id"], "--reason", "x")
    assert active.returncode == 3 and "still an active employee" in active.stderr
    assert len(env.audit()) == before


def _leaves(env: RoomsEnv, key: str) -> None:
    """HR removes the person from the directory; the sync deactivates the account."""
    conn = env.slapd.connection()
    try:
        delete_person(conn, _people(env)[key].uid, env.ou)
    finally:
        conn.unbind()
    assert env.sync(force=True).status == "ok"  # 1 of 3: the guard would stop it


def _store_text(env: RoomsEnv) -> str:
    path = env.settings.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        chunks = []
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert "announcement_recipients" in tables and "legal_holds" in tables
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):  # noqa: S608 - sqlite_master
                chunks.append(" ".join(str(v) for v in row))
    return "\n".join(chunks)


def test_erasure_pseudonymises_the_store_and_keeps_the_audit_log(env: RoomsEnv) -> None:
    anna = _ids(env, "anna")
    _leaves(env, "anna")
    held = env.cli("hold", "set", anna["employee_id"], "--reason", "Az. 3 Ca 123/26")
    assert held.returncode == 0, held.stderr
    refused = env.cli("gdpr", "erase", anna["employee_id"], "--reason", "Antrag")
    assert refused.returncode == 3 and "legal hold" in refused.stderr
    assert env.cli("hold", "lift", anna["employee_id"], "--reason", "Verfahren beendet"
                   ).returncode == 0
    audit_before = [(r.id, r.at, r.action) for r in env.audit()]
    dry = env.cli("gdpr", "erase", anna["employee_id"], "--reason", "Antrag", "--dry-run",
                  "--json")
    assert dry.returncode == 0, dry.stderr
    planned = json.loads(dry.stdout)
    assert planned["dry_run"] is True and planned["rows"]["audit_log.target"] >= 3
    assert anna["user_id"] in _store_text(env)  # nothing changed yet
    done = env.cli("gdpr", "erase", anna["employee_id"], "--reason", "Antrag vom 1.12.",
                   "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    pseudonym = result["pseudonym"]
    assert pseudonym.startswith("erased-")
    # The erasure's own offboarding row (erase=True) is one more row naming the person.
    assert result["rows"] == {**planned["rows"],
                              "audit_log.target": planned["rows"]["audit_log.target"] + 1,
                              "audit_log.details": planned["rows"]["audit_log.details"] + 1}
    text = _store_text(env)
    for needle in (anna["user_id"], anna["employee_id"], anna["email"],
                   "Anna Łukasiewicz-Groß"):
        assert needle not in text, needle
    assert pseudonym in text
    assert _ids(env, "bert")["user_id"] in text  # others untouched
    # Every earlier audit row is still there, in order, same time and action.
    after = [(r.id, r.at, r.action) for r in env.audit()]
    assert after[:len(audit_before)] == audit_before
    assert [a for _, _, a in after[len(audit_before):]][-1] == "gdpr.erase"
    # ...and the log is append-only again.
    path = env.settings.store_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db, pytest.raises(sqlite3.IntegrityError,
                                                    match="append-only"):
        db.execute("UPDATE audit_log SET target = 'x' WHERE id = 1")
    with env.synapse.admin() as admin:
        user = admin.get(f"/_synapse/admin/v2/users/{quote(anna['user_id'])}").json()
    assert user["deactivated"] is True and user["erased"] is True
    again = env.cli("gdpr", "erase", pseudonym, "--reason", "x")
    assert again.returncode == 3


def test_timeline_erases_after_its_period_unless_on_legal_hold(env: RoomsEnv) -> None:
    carla = _ids(env, "carla")
    _leaves(env, "carla")
    soon = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    later = (datetime.now(UTC) + timedelta(days=31)).isoformat()
    first = json.loads(env.cli("gdpr", "timeline", "--now", soon, "--json").stdout)
    assert first["erased"] == [] and first["withheld_by_legal_hold"] == []
    assert env.cli("hold", "set", carla["employee_id"], "--reason", "Prüfung").returncode == 0
    held = json.loads(env.cli("gdpr", "timeline", "--now", later, "--json").stdout)
    assert held["erased"] == [] and held["withheld_by_legal_hold"] == [carla["employee_id"]]
    assert env.cli("hold", "lift", carla["employee_id"], "--reason", "ok").returncode == 0
    done = env.cli("gdpr", "timeline", "--now", later, "--json")
    assert done.returncode == 0, done.stderr
    erased = json.loads(done.stdout)["erased"]
    assert len(erased) == 1 and erased[0].startswith("erased-")
    with env.synapse.admin() as admin:
        user = admin.get(f"/_synapse/admin/v2/users/{quote(carla['user_id'])}").json()
    assert user["erased"] is True
    actions = [r.action for r in env.audit()]
    assert actions.count("gdpr.hold_set") == 2 and actions.count("gdpr.hold_lifted") == 2
    assert [r.actor for r in env.audit(action="gdpr.erase")][-1] == "hauspost-timeline"
