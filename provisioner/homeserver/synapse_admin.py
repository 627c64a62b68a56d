"""Async client for Synapse's admin API, with retries and backoff on 429 / 5xx.

The only place that talks HTTP to Synapse for the provisioner. Every write is counted
(`writes`), so runs can prove they made zero writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import logging
from dataclasses import dataclass
from typing import Any, Literal, cast
from urllib.parse import quote

import httpx

from provisioner.errors import HauspostError

logger = logging.getLogger(__name__)

ACCOUNTS_BATCH_PATH = "/_synapse/client/hauspost/accounts/batch"
MEMBERS_BATCH_PATH = "/_synapse/client/hauspost/rooms/members/batch"
ROOM_STATE_PATH = "/_synapse/client/hauspost/rooms/state"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class SynapseUnreachableError(HauspostError):
    """Synapse did not answer at all, retries included (down, restarting, wrong URL)."""


class AdminApiError(HauspostError):
    def __init__(self, method: str, path: str, status: int, errcode: str | None,
                 error: str | None) -> None:
        self.status = status
        self.errcode = errcode
        super().__init__(f"Synapse admin API {method} {path} answered {status}"
                         f" {errcode or ''}: {error or ''}".rstrip(": "))


class NotAttemptedError(HauspostError):
    """An action left out because Synapse had already proved unreachable in this run."""


class _UntilUnreachable:
    """The admin client, refusing further calls once one found Synapse unreachable."""

    def __init__(self, admin: SynapseAdmin) -> None:
        self._admin = admin
        self._unreachable: SynapseUnreachableError | None = None

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._admin, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self._unreachable is not None:
                raise NotAttemptedError(f"not attempted: {self._unreachable}")
            try:
                return await attribute(*args, **kwargs)
            except SynapseUnreachableError as exc:
                self._unreachable = self._unreachable or exc
                raise

        return call


def until_unreachable(admin: SynapseAdmin) -> SynapseAdmin:
    """`admin`, refusing every further call (NotAttemptedError) once one found Synapse
    unreachable: a run stops instead of waiting out each remaining action's retries, and
    the next run plans what is left."""
    return cast(SynapseAdmin, _UntilUnreachable(admin))


@dataclass(frozen=True)
class AccountState:
    """What Synapse knows about one account (the planner's "current state")."""

    user_id: str
    display_name: str | None
    deactivated: bool
    admin: bool


def q(user_id: str) -> str:
    return quote(user_id, safe="")


class SynapseAdmin:
    def __init__(self, base_url: str, token: str | None, *, timeout: float = 30.0,
                 max_retries: int = 5, backoff: float = 0.2) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout,
                                       limits=httpx.Limits(max_connections=32))
        self._max_retries = max_retries
        self._backoff = backoff
        self.writes = 0
        self._compact_room_read = True

    async def __aenter__(self) -> SynapseAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(self, method: str, path: str, *, json: Any = None,
                      params: dict[str, Any] | None = None,
                      ok: tuple[int, ...] = (200,)) -> httpx.Response:
        if method != "GET":
            self.writes += 1
        delay = self._backoff
        for attempt in range(self._max_retries + 1):
            try:
                resp = await self._http.request(method, path, json=json, params=params)
            except httpx.TransportError as exc:
                if attempt == self._max_retries:
                    raise SynapseUnreachableError(
                        f"cannot reach Synapse at {self._http.base_url}: {exc}") from None
                await asyncio.sleep(delay)
                delay *= 2
                continue
            if resp.status_code in RETRY_STATUSES and attempt < self._max_retries:
                wait = delay
                if resp.status_code == 429:
                    try:
                        wait = max(wait, resp.json().get("retry_after_ms", 0) / 1000)
                    except ValueError:
                        pass
                logger.debug("%s %s -> %s; retrying in %.2f s", method, path,
                             resp.status_code, wait)
                await asyncio.sleep(wait)
                delay *= 2
                continue
            if resp.status_code not in ok:
                try:
                    body = resp.json()
                except ValueError:
                    body = {}
                raise AdminApiError(method, path, resp.status_code, body.get("errcode"),
                                    body.get("error"))
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    # --- bootstrap -------------------------------------------------------------------

    async def register_with_shared_secret(self, localpart: str, password: str,
                                          shared_secret: str, *, admin: bool) -> dict[str, Any]:
        """Register an account with the registration shared secret (the service account)."""
        nonce = (await self.request("GET", "/_synapse/admin/v1/register")).json()["nonce"]
        # Synapse's MAC: HMAC-SHA1 over nonce, user, password, admin flag, NUL-separated.
        message = b"\x00".join(
            [nonce.encode(), localpart.encode(), password.encode(),
             b"admin" if admin else b"notadmin"]
        )
        mac = hmac.new(shared_secret.encode(), message, hashlib.sha1).hexdigest()
        body = {"nonce": nonce, "username": localpart, "password": password,
                "admin": admin, "mac": mac}
        resp = await self.request("POST", "/_synapse/admin/v1/register", json=body)
        data: dict[str, Any] = resp.json()
        return data

    # --- accounts --------------------------------------------------------------------

    async def get_account(self, user_id: str) -> AccountState | None:
        resp = await self.request("GET", f"/_synapse/admin/v2/users/{q(user_id)}", ok=(200, 404))
        if resp.status_code == 404:
            return None
        data = resp.json()
        return AccountState(user_id=data["name"], display_name=data.get("displayname"),
                            deactivated=bool(data.get("deactivated")), admin=bool(data.get("admin")))

    async def list_accounts(self, page_size: int = 500) -> list[AccountState]:
        """Every local account, deactivated ones included (guests excluded)."""
        out: list[AccountState] = []
        # locked=true: without it Synapse leaves locked accounts out of the list.
        params: dict[str, Any] = {"limit": page_size, "guests": "false", "deactivated": "true",
                                  "locked": "true"}
        while True:
            data = (await self.request("GET", "/_synapse/admin/v2/users", params=params)).json()
            for u in data.get("users", []):
                out.append(AccountState(user_id=u["name"], display_name=u.get("displayname"),
                                        deactivated=bool(u.get("deactivated")),
                                        admin=bool(u.get("admin"))))
            nxt = data.get("next_token")
            if not nxt:
                return out
            params["from"] = nxt

    async def deactivate(self, user_id: str, *, erase: bool = False) -> None:
        """Revokes tokens, deletes devices and pushers, parts all rooms (Synapse admin API)."""
        await self.request("POST", f"/_synapse/admin/v1/deactivate/{q(user_id)}",
                           json={"erase": erase})

    # --- provisioning (apply / offboard) ---------------------------------------------

    async def create_account(self, user_id: str, *, display_name: str, email: str | None,
                             password: str | None = None) -> None:
        """Create an account. Without a password it has no local password at all: with LDAP
        login on, the directory password is the only way in."""
        body: dict[str, Any] = {"displayname": display_name, "admin": False}
        if email:
            body["threepids"] = [{"medium": "email", "address": email}]
        if password is not None:
            body["password"] = password
        await self.request("PUT", f"/_synapse/admin/v2/users/{q(user_id)}", json=body,
                           ok=(200, 201))

    async def _batch_size(self, path: str, what: str) -> int | None:
        """`max_batch` of one of our modules' batched paths; None when it is not there
        (404, 501) or refuses us (403): the caller uses the admin API."""
        resp = await self.request("GET", path, ok=(200, 403, 404, 501))
        if resp.status_code != 200:
            if resp.status_code == 403:
                logger.warning("Synapse's %s refuses the service account (is it the module's "
                               "provisioner_users?); using the admin API", what)
            return None
        size = resp.json().get("max_batch")
        return size if isinstance(size, int) and size > 0 else None

    async def _batch_results(self, path: str, body: dict[str, Any], count: int
                             ) -> list[dict[str, Any]]:
        """POST one batch; exactly one result object per entry, in order."""
        resp = await self.request("POST", path, json=body)
        results = resp.json().get("results")
        if not isinstance(results, list) or len(results) != count:
            raise AdminApiError("POST", path, resp.status_code, None,
                                "answered a result list that does not match the batch")
        return [r if isinstance(r, dict) else {"error": "malformed result"} for r in results]

    async def accounts_batch_size(self) -> int | None:
        """How many accounts Synapse's batched path (synapse_modules.accounts_batch) takes
        per request; None: the admin API."""
        return await self._batch_size(ACCOUNTS_BATCH_PATH, "batched account path")

    async def create_accounts_batch(self, entries: list[dict[str, Any]]
                                    ) -> list[dict[str, Any]]:
        """Create accounts in one request; one result per entry, in order: `user_id`, and
        `error` / `errcode` for an entry that was not created."""
        return await self._batch_results(ACCOUNTS_BATCH_PATH, {"accounts": entries},
                                         len(entries))

    async def members_batch_size(self) -> int | None:
        """How many people Synapse's batched membership path (synapse_modules.members_batch)
        takes per request; None: the admin API."""
        return await self._batch_size(MEMBERS_BATCH_PATH, "batched membership path")

    async def add_members_batch(self, room_id: str, user_ids: list[str]
                                ) -> list[dict[str, Any]]:
        """Invite and join these people in one request; one result per person, in order:
        `user_id`, and `error` for a person who was not added."""
        return await self._batch_results(MEMBERS_BATCH_PATH,
                                         {"room_id": room_id, "user_ids": user_ids},
                                         len(user_ids))

    async def room_state(self, room_id: str) -> list[dict[str, Any]] | None:
        """A room's current state events (None: Synapse does not hold the room): through
        the compact room read while Synapse offers it (members in short form), else the
        admin API's `rooms/<id>/state`. Asked of the compact read until it first answers
        that it is not there."""
        if self._compact_room_read:
            events = await self.room_state_compact(room_id)
            if events is not False:
                return events
            self._compact_room_read = False
        resp = await self.request("GET", f"/_synapse/admin/v1/rooms/{q(room_id)}/state",
                                  ok=(200, 404))
        return None if resp.status_code == 404 else list(resp.json().get("state", []))

    async def room_state_compact(self, room_id: str) -> list[dict[str, Any]] | None | Literal[False]:
        """A room's current state as events, members in short form (type, state_key,
        sender, origin_server_ts and `content.membership` only), through
        synapse_modules.members_batch; None: Synapse does not hold the room; False: the
        compact read is not there (404, 501) or refuses us (403)."""
        resp = await self.request("GET", ROOM_STATE_PATH, params={"room_id": room_id},
                                  ok=(200, 403, 404, 501))
        if resp.status_code != 200:
            if resp.status_code == 403:
                logger.warning("Synapse's compact room read refuses the service account; "
                               "reading rooms through the admin API")
            return False
        data = resp.json()
        if not data.get("found"):
            return None
        events: list[dict[str, Any]] = list(data.get("state") or [])
        events.extend({"type": "m.room.member", "state_key": user_id, "sender": sender,
                       "origin_server_ts": ts, "content": {"membership": membership}}
                      for user_id, membership, sender, ts in data.get("members") or [])
        return events

    async def set_display_name(self, user_id: str, display_name: str) -> None:
        await self.request("PUT", f"/_synapse/admin/v2/users/{q(user_id)}",
                           json={"displayname": display_name}, ok=(200, 201))

    async def set_email(self, user_id: str, email: str | None) -> None:
        """Replace the account's e-mail addresses with this one (or none)."""
        threepids = [{"medium": "email", "address": email}] if email else []
        await self.request("PUT", f"/_synapse/admin/v2/users/{q(user_id)}",
                           json={"threepids": threepids}, ok=(200, 201))

    async def reactivate(self, user_id: str, *, display_name: str, email: str | None,
                         password: str | None = None) -> None:
        """Activate a deactivated account again and restore its profile (deactivation
        removed the e-mail addresses, erasure also the display name)."""
        body: dict[str, Any] = {"deactivated": False, "displayname": display_name,
                                "threepids": ([{"medium": "email", "address": email}]
                                              if email else [])}
        if password is not None:
            body["password"] = password
            body["logout_devices"] = True
        await self.request("PUT", f"/_synapse/admin/v2/users/{q(user_id)}", json=body,
                           ok=(200, 201))

    async def list_devices(self, user_id: str) -> list[str]:
        resp = await self.request("GET", f"/_synapse/admin/v2/users/{q(user_id)}/devices")
        return [str(d["device_id"]) for d in resp.json().get("devices", [])]

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Delete devices and their access tokens."""
        await self.request("POST", f"/_synapse/admin/v2/users/{q(user_id)}/delete_devices",
                           json={"devices": device_ids})

    async def joined_rooms(self, user_id: str) -> list[str]:
        resp = await self.request("GET", f"/_synapse/admin/v1/users/{q(user_id)}/joined_rooms")
        return [str(r) for r in resp.json().get("joined_rooms", [])]
