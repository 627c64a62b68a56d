"""`hauspost rooms`: the managed spaces and rooms, their members and their drift.

Drift is what the next `sync` would change in a room: settings changed outside the policy
(name, topic, avatar, history visibility, power levels, marker, retention) and members to
add or remove. RETENTION is how long the room keeps messages (its m.room.retention), with
the policy's value after an arrow when they differ. Exit code 0; 3 for a policy/config
error (file:line named).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from provisioner.cli import data_dir_option
from provisioner.directory.read import read_directory
from provisioner.errors import ConfigError
from provisioner.homeserver.service_account import ensure_service_token
from provisioner.homeserver.synapse_admin import SynapseAdmin
from provisioner.rooms.plan import CreateRoom, RoomAction, describe_lifetime
from provisioner.rooms.run import (
    load_room_policy,
    members_count,
    plan_room_changes,
    stored_accounts,
)
from provisioner.settings import load_settings
from provisioner.store import open_store


def _drift(actions: list[RoomAction]) -> dict[str, Any]:
    settings = sorted({a.kind.removeprefix("set_") for a in actions
                       if a.kind.startswith("set_") or a.kind.endswith("space_child")})
    counts = Counter(a.kind for a in actions)
    return {"settings": settings, "add_members": counts["add_member"],
            "remove_members": counts["remove_member"],
            "archive": bool(counts["archive_room"] or counts["release_room"]),
            "create": any(isinstance(a, CreateRoom) for a in actions)}


def _drift_text(drift: dict[str, Any]) -> str:
    parts = []
    if drift["create"]:
        parts.append("to create")
    if drift["settings"]:
        parts.append(", ".join(drift["settings"]))
    if drift["add_members"] or drift["remove_members"]:
        parts.append(f"+{drift['add_members']} -{drift['remove_members']} members")
    if drift["archive"]:
        parts.append("to archive/release")
    return "; ".join(parts) or "-"


def _lifetime(content: Any) -> str | None:
    """'2y' for {"max_lifetime": 63072000000}; None for no retention (or a space)."""
    return describe_lifetime(content) if content else None


def _retention_text(row: dict[str, Any]) -> str:
    have, want = row["retention"], row["wanted_retention"]
    if row["kind"] == "space":
        return "-"
    if row["status"] in ("archived", "released"):  # the policy no longer touches it
        return have or "none"
    if have == want or row["status"] == "planned":
        return want or "none"
    return f"{have or 'none'}->{want or 'none'}"


@click.command("rooms")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable list on stdout.")
def rooms_command(data_dir: Path, as_json: bool) -> None:
    """List managed spaces and rooms with member counts, retention and drift; change nothing.

    Reads the directory and the room policy like `plan`. MEMBERS is joined/wanted;
    RETENTION is how long messages are kept (now->policy when they differ).

    Example: hauspost rooms -d /var/lib/hauspost --json
    """
    settings = load_settings(data_dir)
    policy = load_room_policy(settings)
    if policy is None:
        raise ConfigError("rooms are not managed: set `policies:` to a policy directory",
                          file=str(settings.file), key="policies")

    async def go() -> list[dict[str, Any]]:
        token = await ensure_service_token(settings)
        store = open_store(settings.store_url)
        try:
            async with SynapseAdmin(settings.homeserver_url, token) as admin:
                directory = await asyncio.to_thread(read_directory, settings)
                plan, managed, states = await plan_room_changes(
                    settings, policy, store, admin, directory, stored_accounts(store),
                    datetime.now(UTC))
        finally:
            store.close()
        by_key: dict[str, list[RoomAction]] = defaultdict(list)
        for action in plan.actions:
            by_key[action.key].append(action)
        rows = []
        for key in sorted(set(managed) | set(plan.desired_members)):
            row = managed.get(key)
            state = states.get(key)
            create = next((a for a in by_key[key] if isinstance(a, CreateRoom)), None)
            rows.append({
                "key": key,
                "kind": row.kind if row else ("space" if create and create.is_space
                                              else "room"),
                "status": row.status if row else "planned",
                "room_id": row.room_id if row else None,
                "name": state.name if state else (create.name if create else None),
                "members": members_count(state, settings.service_user_id) if state else 0,
                "wanted_members": plan.desired_members.get(key, 0),
                "retention": _lifetime(state.retention) if state else None,
                "wanted_retention": _lifetime(plan.desired_retention.get(key)),
                "drift": _drift(by_key[key]),
            })
        return rows

    rows = asyncio.run(go())
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    click.echo(f"{'KEY':<28} {'KIND':<5} {'STATUS':<9} {'MEMBERS':>9}  {'RETENTION':<10} "
               f"{'DRIFT':<30} NAME")
    for r in rows:
        members = f"{r['members']}/{r['wanted_members']}"
        click.echo(f"{r['key']:<28} {r['kind']:<5} {r['status']:<9} {members:>9}  "
                   f"{_retention_text(r):<10} {_drift_text(r['drift']):<30} {r['name'] or ''}")
