"""Many accounts in one request, for the provisioner only (docs/scale-out.md "Batched accounts").

The admin API creates one account per HTTP request: authentication, JSON, logging and a
response for every person. `POST /_synapse/client/hauspost/accounts/batch` creates up to
`max_batch` accounts in one request, each exactly as `PUT /_synapse/admin/v2/users/<id>`
creates it: Synapse's registration handler with the admin API's arguments (`by_admin`,
approved, the display name as profile, no local password unless one is given), then the
e-mail address through the auth handler, as the admin API adds it.

* **Only the provisioner.** The requester must be one of `provisioner_users` and a server
  admin; anybody else gets 403 before the body is read, no token 401. Fails closed: a
  check that cannot decide refuses.
* **Every entry judged on its own.** A bad localpart, a duplicate in the batch, an account
  that exists, a bad display name or e-mail: that entry is reported with the reason, the
  others are created. Registration still passes every spam checker; the identity policy
  allows this one path (`synapse_modules.identity`), which only this resource serves.
* `GET` on the same path answers `{"max_batch": N}` to the same requesters: the
  provisioner asks once per run and falls back to the admin API on 404.

The two handler methods are Synapse internals (there is no module API for a registration
with the admin API's arguments); they are checked when the module loads, and Synapse
refuses to start if they changed. Stateless, so safe on every worker; the provisioner
calls the main process.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from synapse.http.server import DirectServeJsonResource
from synapse.http.site import SynapseRequest
from synapse.module_api import ModuleApi, make_deferred_yieldable, run_in_background
from synapse.module_api.errors import Codes, ConfigError, SynapseError
from twisted.internet import defer

from synapse_modules._config import ConfigReader
from synapse_modules._provisioner_only import authorise_provisioner
from synapse_modules._provisioner_only import requester_allowed as provisioner_allowed
from synapse_modules._synapse_shape import method_problem

logger = logging.getLogger(__name__)

BATCH_PATH = "/_synapse/client/hauspost/accounts/batch"
MAX_DISPLAY_NAME = 256  # Synapse's profile limit
MAX_PASSWORD = 512  # the admin API's limit
#: Entries of one batch created at a time. Each account is a few database transactions;
#: on PostgreSQL they run on several connections, on SQLite they queue on its one.
LANES = 4
# Synapse's historical localpart rule (lower case; what the admin API accepts).
_LOCALPART = re.compile(r"^[a-z0-9._=\-/+]+$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")

REGISTER_PARAMS = ("localpart", "password_hash")
THREEPID_PARAMS = ("user_id", "medium", "address", "validated_at")


@dataclass(frozen=True)
class AccountsBatchConfig:
    provisioner_users: frozenset[str]
    max_batch: int


def parse_accounts_batch_config(raw: object) -> AccountsBatchConfig:
    reader = ConfigReader(raw)
    users = reader.provisioner_users()
    max_batch = reader.integer("max_batch", default=500, minimum=1, maximum=5000)
    reader.finish()
    return AccountsBatchConfig(provisioner_users=users, max_batch=max_batch)


# --------------------------------------------------------------------------------------
# Pure decisions.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    localpart: str
    display_name: str
    email: str | None
    password: str | None


def requester_allowed(user_id: str, is_admin: bool, config: AccountsBatchConfig) -> bool:
    return provisioner_allowed(user_id, is_admin, config.provisioner_users)


def entry_problem(raw: object) -> str | None:
    """Why one entry of a batch cannot be created, or None."""
    if not isinstance(raw, Mapping):
        return "an entry must be an object"
    unknown = set(raw) - {"localpart", "display_name", "email", "password"}
    if unknown:
        return f"unknown keys {sorted(unknown)}"
    localpart = raw.get("localpart")
    if not isinstance(localpart, str) or not _LOCALPART.match(localpart):
        return "localpart must be lower-case letters, digits and ._=-/+"
    if localpart.startswith("_"):
        return "localpart may not begin with _"
    name = raw.get("display_name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_DISPLAY_NAME:
        return f"display_name must be a non-empty string of at most {MAX_DISPLAY_NAME} characters"
    email = raw.get("email")
    if email is not None and (not isinstance(email, str) or not _EMAIL.match(email)):
        return "email must be an e-mail address or null"
    password = raw.get("password")
    if password is not None and (not isinstance(password, str) or not password
                                 or len(password) > MAX_PASSWORD):
        return f"password must be a non-empty string of at most {MAX_PASSWORD} characters"
    return None


def parse_entries(body: object, max_batch: int) -> list[tuple[Entry | None, str | None]]:
    """Each entry with its problem (None when it may be created); a duplicate localpart
    is a problem for every entry after the first."""
    if not isinstance(body, Mapping) or not isinstance(body.get("accounts"), list):
        raise SynapseError(400, "expected {\"accounts\": [...]}", Codes.BAD_JSON)
    raw_entries: list[object] = body["accounts"]
    if len(raw_entries) > max_batch:
        raise SynapseError(400, f"at most {max_batch} accounts per request", Codes.TOO_LARGE)
    seen: set[str] = set()
    out: list[tuple[Entry | None, str | None]] = []
    for raw in raw_entries:
        problem = entry_problem(raw)
        if problem is not None:
            out.append((None, problem))
            continue
        assert isinstance(raw, Mapping)  # noqa: S101 - checked by entry_problem
        entry = Entry(localpart=raw["localpart"], display_name=raw["display_name"],
                      email=raw.get("email"), password=raw.get("password"))
        if entry.localpart in seen:
            out.append((entry, "duplicate localpart in this batch"))
            continue
        seen.add(entry.localpart)
        out.append((entry, None))
    return out


# --------------------------------------------------------------------------------------
# The module.
# --------------------------------------------------------------------------------------


def _checked(obj: Any, name: str, params: tuple[str, ...]) -> Callable[..., Awaitable[Any]]:
    problem = method_problem(obj, name, params)
    if problem is not None:
        raise ConfigError(f"synapse_modules.accounts_batch: {problem}; this Synapse is not "
                          "supported (tested: 1.163.x)")
    return getattr(obj, name)  # type: ignore[no-any-return]


class AccountsBatchResource(DirectServeJsonResource):
    def __init__(self, config: AccountsBatchConfig, api: ModuleApi,
                 register: Callable[..., Awaitable[Any]],
                 add_threepid: Callable[..., Awaitable[Any]],
                 hash_password: Callable[[str], Awaitable[str]]) -> None:
        super().__init__()
        self._config = config
        self._api = api
        self._register = register
        self._add_threepid = add_threepid
        self._hash = hash_password

    async def _authorise(self, request: SynapseRequest) -> str:
        return await authorise_provisioner(
            self._api, request, self._config.provisioner_users,
            "only the provisioner's service account may create accounts here")

    async def _async_render_GET(self, request: SynapseRequest) -> tuple[int, dict[str, Any]]:  # noqa: N802
        await self._authorise(request)
        return 200, {"max_batch": self._config.max_batch}

    async def _async_render_POST(self, request: SynapseRequest) -> tuple[int, dict[str, Any]]:  # noqa: N802
        requester = await self._authorise(request)
        try:
            body = json.loads(request.content.read())  # type: ignore[union-attr]
        except ValueError:
            raise SynapseError(400, "the body is not JSON", Codes.NOT_JSON) from None
        parsed = parse_entries(body, self._config.max_batch)
        results: list[dict[str, Any]] = [{} for _ in parsed]

        async def lane(indices: range) -> None:
            for i in indices:
                results[i] = await self._one(*parsed[i])

        lanes = [run_in_background(lane, range(k, len(parsed), LANES))
                 for k in range(min(LANES, len(parsed)))]
        try:
            await make_deferred_yieldable(defer.gatherResults(lanes, consumeErrors=True))
        except defer.FirstError as exc:  # an unexpected error: the whole batch fails (500)
            exc.subFailure.raiseException()
        created = sum(1 for r in results if "error" not in r)
        logger.info("%s created %d of %d accounts in one batch", requester, created,
                    len(results))
        return 200, {"results": results}

    async def _one(self, entry: Entry | None, problem: str | None) -> dict[str, Any]:
        if entry is None:
            return {"error": problem, "errcode": Codes.INVALID_PARAM}
        user_id = self._api.get_qualified_user_id(entry.localpart)
        if problem is not None:
            return {"user_id": user_id, "error": problem, "errcode": Codes.INVALID_PARAM}
        try:
            password_hash = (await self._hash(entry.password)
                             if entry.password is not None else None)
            # The admin API's arguments (PUT /_synapse/admin/v2/users/<id>, create branch).
            user_id = await self._register(localpart=entry.localpart,
                                           password_hash=password_hash, admin=False,
                                           default_display_name=entry.display_name,
                                           user_type=None, by_admin=True, approved=True)
            if entry.email is not None:
                now = self._api.get_current_time_msec()
                await self._add_threepid(user_id, "email", entry.email, now)
        except SynapseError as exc:
            return {"user_id": user_id, "error": exc.msg, "errcode": exc.errcode}
        return {"user_id": user_id}


class AccountsBatch:
    """Loaded by Synapse from `modules:`; see provisioner/homeserver/module_configs.py."""

    def __init__(self, config: AccountsBatchConfig, api: ModuleApi) -> None:
        hs = getattr(api, "_hs", None)
        if hs is None or not callable(getattr(hs, "get_registration_handler", None)) \
                or not callable(getattr(hs, "get_auth_handler", None)):
            raise ConfigError("synapse_modules.accounts_batch: the homeserver has no "
                              "registration or auth handler (tested: Synapse 1.163.x)")
        register = _checked(hs.get_registration_handler(), "register_user", REGISTER_PARAMS)
        auth = hs.get_auth_handler()
        add_threepid = _checked(auth, "add_threepid", THREEPID_PARAMS)
        hash_password = _checked(auth, "hash", ("password",))
        api.register_web_resource(BATCH_PATH, AccountsBatchResource(
            config, api, register, add_threepid, hash_password))

    @staticmethod
    def parse_config(config: dict[str, Any]) -> AccountsBatchConfig:
        return parse_accounts_batch_config(config)
