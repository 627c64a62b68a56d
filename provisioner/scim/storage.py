"""The SCIM storage of `hauspost serve`: scim2-server's in-memory index for filters, paging
and uniqueness, written through to the state store, and every change turned into jobs.

One process owns the SCIM resources (the service), so the index loaded at start-up stays
exact. Each write is one store transaction holding the resource, its audit row (the SCIM
client as actor) and the jobs it causes (offboard, reconcile, and with `rooms_follow` a
room sync for membership changes, provisioner/scim/effects.py); the HTTP answer is sent
only after that commit. If the commit fails the index is reloaded from the store, so the
client's view and the store never differ; if the reload fails too (the database is down),
every later request reloads first, so nothing is answered from an index the store lost.

Passwords a client sends (Okta does on create) are dropped: Hauspost never keeps them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from scim2_models import (
    InvalidValueException,
    NotFoundException,
    Resource,
    ResourceType,
    ResponseParameters,
    SearchRequest,
    UniquenessException,
)
from scim2_server.memory import InMemoryStorage
from scim2_server.storage import AsyncScimStorage, SearchPage, search_page
from sqlalchemy import select
from sqlalchemy.orm import Session

from provisioner.accounts.plan import user_id_for
from provisioner.directory.scim_person import ScimPerson, employee_id_for, person_of
from provisioner.scim.effects import changes_rooms, room_sync_job, user_effects
from provisioner.store import Store
from provisioner.store import repository as repo
from provisioner.store.jobs import JobSpec, enqueue
from provisioner.store.service_models import ScimResourceRow

logger = logging.getLogger(__name__)

#: The authenticated SCIM client of the request being served (the audit actor).
current_actor: ContextVar[str] = ContextVar("scim_actor", default="scim:unknown")

USER = "User"
GROUP = "Group"


class _Index(InMemoryStorage):
    def next_version(self) -> str:
        # Unique across restarts: a counter would hand out W/"1" again after a restart.
        return f'W/"{uuid.uuid4().hex[:16]}"'


@dataclass(frozen=True)
class UserLink:
    employee_id: str
    user_id: str


def dump(resource: Resource[Any]) -> dict[str, Any]:
    data: dict[str, Any] = resource.model_dump(scim_ctx=None, mode="json", by_alias=True,
                                               exclude_none=True)
    return data


def _strip_password(resource: Resource[Any]) -> Resource[Any]:
    if getattr(resource, "password", None) is not None:
        resource = resource.model_copy(deep=True)
        resource.password = None  # type: ignore[attr-defined]
    return resource


def _kind(resource_type: ResourceType) -> str:
    return (resource_type.name or "resource").lower()


def _is_user(resource_type: ResourceType) -> bool:
    # The provider's models are built from the schemas, not scim2_models.User: ask the type.
    return resource_type.name == USER


def _members(resource: Resource[Any] | None) -> set[str]:
    members = dump(resource).get("members") if resource is not None else None
    return {str(m["value"]) for m in members or [] if isinstance(m, dict) and m.get("value")}


def _display_name(resource: Resource[Any] | None) -> str:
    return str(dump(resource).get("displayName") or "") if resource is not None else ""


class HauspostScimStorage(AsyncScimStorage):
    supports_cursors = False

    def __init__(self, store: Store, *, server_name: str, protected: frozenset[str],
                 models: dict[str, type[Resource[Any]]],
                 on_queued: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 lock: asyncio.Lock | None = None, rooms_follow: bool = False) -> None:
        self._store = store
        #: Queue a room sync when memberships change: `scim` is a directory source and
        #: rooms are managed, so SCIM groups feed the org policy's group rules.
        self._rooms_follow = rooms_follow
        self._server_name = server_name
        self._protected = protected
        self._models = models
        self._on_queued = on_queued
        self._clock = clock
        self._index = _Index(clock=clock)
        self._links: dict[str, UserLink] = {}
        # Shared with the service's other writers of the queue (webhook, schedules), so the
        # "is an offboarding of this account already pending?" check and the insert that
        # follows are never interleaved with another writer's.
        self._lock = lock or asyncio.Lock()
        #: The index may differ from the store: a write failed and so did the reload
        #: after it (the database was down). Every request reloads first until one works.
        self._stale = False

    # --- loading ----------------------------------------------------------------------

    def load(self) -> int:
        """(Re)build the index from the store; returns how many resources it holds."""
        resources: list[Resource[Any]] = []
        links: dict[str, UserLink] = {}
        with self._store.session() as session:
            for row in session.scalars(select(ScimResourceRow)):
                model = self._models.get(row.resource_type)
                if model is None:
                    logger.warning("SCIM resource %s has unknown type %s; not served",
                                   row.id, row.resource_type)
                    continue
                resources.append(model.model_validate(row.body, scim_ctx=None))
                if row.employee_id and row.user_id:
                    links[row.id] = UserLink(row.employee_id, row.user_id)
        self._index.resources = resources
        self._links = links
        return len(resources)

    async def _reload_after_failure(self) -> None:
        try:
            await asyncio.to_thread(self.load)
        except Exception:
            logger.error("SCIM: the index could not be reloaded from the store after a failed "
                         "write; every request reloads it first until that works")
            self._stale = True
            raise

    async def _fresh(self) -> None:
        if self._stale:
            await asyncio.to_thread(self.load)
            self._stale = False
            logger.info("SCIM: the index was reloaded from the store")

    def operation(self) -> AbstractAsyncContextManager[None]:
        # One write at a time: read-modify-write of PATCH/PUT stays atomic.
        return self._lock

    # --- reads ------------------------------------------------------------------------

    async def get(self, resource_type: ResourceType, resource_id: str, *,
                  response_parameters: ResponseParameters[Any] | None = None) -> Resource[Any]:
        await self._fresh()
        return self._index.get(resource_type, resource_id)

    async def search(self, resource_types: list[ResourceType],
                     search_request: SearchRequest[Any], *, position: Any = None) -> SearchPage:
        await self._fresh()
        return search_page(self._index, resource_types, search_request, position)

    # --- writes -----------------------------------------------------------------------

    async def create(self, resource_type: ResourceType,
                     resource: Resource[Any]) -> Resource[Any]:
        await self._fresh()
        resource = _strip_password(resource)
        person: ScimPerson | None = None
        if _is_user(resource_type):
            person_of(dump(resource), employee_id="-")  # 400 before anything is stored
        created = self._index.create(resource_type, resource)
        link: UserLink | None = None
        jobs: list[JobSpec] = []
        try:
            if _is_user(resource_type):
                body = dump(created)
                person = person_of(body, employee_id=employee_id_for(body, str(created.id)))
                link = await asyncio.to_thread(self._claim, person, str(created.id))
                jobs = user_effects(None, person, link.user_id)
            jobs += self._room_jobs(resource_type, None, created, jobs)
            await asyncio.to_thread(self._persist, resource_type, created, None, link, jobs,
                                    f"scim.{_kind(resource_type)}.create",
                                    self._describe(None, created, person))
        except BaseException:
            await self._reload_after_failure()
            raise
        if link is not None:
            self._links[str(created.id)] = link
        self._after(jobs)
        return created

    async def update(self, resource_type: ResourceType, resource: Resource[Any], *,
                     expected_version: str | None = None) -> Resource[Any]:
        await self._fresh()
        resource = _strip_password(resource)
        old = self._index.get(resource_type, str(resource.id))
        link = self._links.get(str(resource.id))
        old_person = new_person = None
        jobs: list[JobSpec] = []
        if _is_user(resource_type) and link is not None:
            old_person = person_of(dump(old), employee_id=link.employee_id)
            new_person = person_of(dump(resource), employee_id=link.employee_id)
            jobs = user_effects(old_person, new_person, link.user_id)
        updated = self._index.update(resource_type, resource, expected_version=expected_version)
        jobs += self._room_jobs(resource_type, old, updated, jobs)
        try:
            details = self._describe(old, updated, new_person)
            if old_person is not None and new_person is not None:
                if old_person.localpart != new_person.localpart:
                    details["note"] = ("userName changed; the Matrix ID stays "
                                       f"{link.user_id if link else '?'}")
            await asyncio.to_thread(self._persist, resource_type, updated, None, link, jobs,
                                    f"scim.{_kind(resource_type)}.update", details)
        except BaseException:
            await self._reload_after_failure()
            raise
        self._after(jobs)
        return updated

    async def delete(self, resource_type: ResourceType, resource_id: str, *,
                     expected_version: str | None = None) -> None:
        await self._fresh()
        old = self._index.get(resource_type, resource_id)
        link = self._links.get(resource_id)
        jobs: list[JobSpec] = []
        if _is_user(resource_type) and link is not None:
            jobs = user_effects(person_of(dump(old), employee_id=link.employee_id), None,
                                link.user_id)
        self._index.delete(resource_type, resource_id, expected_version=expected_version)
        jobs += self._room_jobs(resource_type, old, None, jobs)
        try:
            await asyncio.to_thread(self._persist, resource_type, None, old, link, jobs,
                                    f"scim.{_kind(resource_type)}.delete",
                                    self._describe(old, None, None))
        except BaseException:
            await self._reload_after_failure()
            raise
        self._links.pop(resource_id, None)
        self._after(jobs)

    # --- helpers ----------------------------------------------------------------------

    def _room_jobs(self, resource_type: ResourceType, old: Resource[Any] | None,
                   new: Resource[Any] | None, user_jobs: list[JobSpec]) -> list[JobSpec]:
        """One room sync when this change can move someone into or out of a room."""
        if not self._rooms_follow:
            return []
        if _is_user(resource_type):
            return [room_sync_job("a SCIM user became active")] if changes_rooms(
                user_jobs) else []
        name = _display_name(new if new is not None else old)
        if old is None:
            return [room_sync_job(f"SCIM group {name!r} created")]
        if new is None:
            return [room_sync_job(f"SCIM group {name!r} deleted")]
        if _members(old) != _members(new) or _display_name(old) != name:
            return [room_sync_job(f"SCIM group {name!r} changed")]
        return []

    def _after(self, jobs: list[JobSpec]) -> None:
        if jobs:
            self._on_queued()

    def _describe(self, old: Resource[Any] | None, new: Resource[Any] | None,
                  person: ScimPerson | None) -> dict[str, Any]:
        resource = new if new is not None else old
        current = dump(resource) if resource is not None else {}
        details: dict[str, Any] = {"scim_id": current.get("id")}
        if "userName" in current:
            details["userName"] = current["userName"]
            details["active"] = current.get("active") is not False
        else:
            details["displayName"] = current.get("displayName")
            before, after = _members(old), _members(new)
            details["members_added"] = sorted(after - before)
            details["members_removed"] = sorted(before - after)
        if person is not None:
            details["display_name"] = person.display_name
        return details

    def _claim(self, person: ScimPerson, scim_id: str) -> UserLink:
        """The Matrix ID a new SCIM user gets; 409/400 when it can't be theirs."""
        with self._store.session() as session:
            account = repo.get_account_by_employee(session, person.employee_id)
            user_id = account.user_id if account else user_id_for(person.localpart,
                                                                   self._server_name)
            if user_id in self._protected:
                raise InvalidValueException(
                    detail=f"{user_id} is a protected account and is never managed over SCIM")
            owner = repo.get_account(session, user_id)
            if owner is not None and owner.employee_id != person.employee_id:
                raise UniquenessException(
                    detail=f"{user_id} already belongs to another employee (Matrix IDs are "
                           "never reused)")
            taken = session.scalars(select(ScimResourceRow).where(
                (ScimResourceRow.user_id == user_id)
                | (ScimResourceRow.employee_id == person.employee_id))).first()
            if taken is not None:
                raise UniquenessException(
                    detail=f"another SCIM user ({taken.id}) already stands for "
                           f"{user_id} / employee {person.employee_id}")
        return UserLink(employee_id=person.employee_id, user_id=user_id)

    def _persist(self, resource_type: ResourceType, new: Resource[Any] | None,
                 old: Resource[Any] | None, link: UserLink | None, jobs: list[JobSpec],
                 action: str, details: dict[str, Any]) -> None:
        now = self._clock()
        actor = current_actor.get()
        with self._store.session() as session:
            self._write_row(session, resource_type, new, old, link, now)
            current = new if new is not None else old
            target = (link.user_id if link else
                      f"scim:{resource_type.name}/{current.id if current else '?'}")
            repo.append_audit(session, actor=actor, action=action, target=target, now=now,
                              reason="SCIM request", details=details)
            for spec in jobs:
                enqueue(session, spec, actor=actor, source="scim", now=now)

    @staticmethod
    def _write_row(session: Session, resource_type: ResourceType, new: Resource[Any] | None,
                   old: Resource[Any] | None, link: UserLink | None, now: datetime) -> None:
        if new is None:
            row = session.get(ScimResourceRow, str(old.id) if old else "")
            if row is None:
                raise NotFoundException(detail="resource vanished from the store")
            session.delete(row)
            return
        row = session.get(ScimResourceRow, str(new.id))
        if row is None:
            session.add(ScimResourceRow(
                id=str(new.id), resource_type=resource_type.name, body=dump(new),
                employee_id=link.employee_id if link else None,
                user_id=link.user_id if link else None, created_at=now, updated_at=now))
        else:
            row.body = dump(new)
            row.updated_at = now
