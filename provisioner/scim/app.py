"""The SCIM 2.0 endpoint: scim2-server's protocol handling over our storage, bearer-token
authentication, served by aiohttp under /scim/v2.

Why aiohttp and scim2-server's framework-free `ASGIApplication.serve`: aiohttp is already
installed with matrix-nio, runs on the service's one asyncio loop next to the webhook and
the schedules, and scim2-server separates reading a request (`ScimRequest`) from serving
it, so we hand it the aiohttp request's parts and need no second server or thread.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from typing import Any, cast

from aiohttp import web
from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    ETag,
    External,
    Filter,
    InvalidFilterException,
    Patch,
    PatchOp,
    Reference,
    Resource,
    ResourceType,
    ResponseParameters,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    UnauthorizedException,
)
from scim2_server.applications.asgi import ASGIApplication
from scim2_server.conditions import Conditions
from scim2_server.requests import ScimRequest
from scim2_server.responses import ScimResponse
from scim2_server.service import ScimService
from scim2_server.utils import load_default_resource_types, load_default_schemas

from provisioner.scim.storage import HauspostScimStorage, current_actor

logger = logging.getLogger(__name__)

PREFIX = "/scim/v2"
MAX_RESULTS = 200

BEARER = AuthenticationScheme(
    type=AuthenticationScheme.Type.oauthbearertoken, name="Bearer token",
    description="A static bearer token shared with the HR system (service.scim.token_file)",
    spec_uri=Reference[External]("https://datatracker.ietf.org/doc/html/rfc6750"),
    primary=True)


def build_provider() -> ScimProvider:
    """Users (with the enterprise extension) and Groups; PATCH, filters, sort and ETags;
    no bulk and no password changes (Hauspost keeps no passwords)."""
    config = ServiceProviderConfig(
        patch=Patch(supported=True), bulk=Bulk(supported=False, max_operations=0,
                                                max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False), sort=Sort(supported=True),
        etag=ETag(supported=True), authentication_schemes=[BEARER])
    return ScimProvider.from_discovery(load_default_schemas().values(),
                                       load_default_resource_types().values(), config=config)


def resource_models(provider: ScimProvider) -> dict[str, type[Resource[Any]]]:
    return {str(rt.name): cast(type[Resource[Any]], provider.model_for(rt))
            for rt in provider.resource_types}


#: A filter Entra ID or Okta sends is one comparison; these bounds refuse filters built to
#: make the parser and the matcher work hard, before either sees them.
MAX_FILTER_LENGTH = 1024
MAX_FILTER_DEPTH = 8


def check_filter_complexity(text: str) -> None:
    """Raise InvalidFilterException (400) for a filter too long or nested too deep."""
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidFilterException(
            detail=f"filter longer than {MAX_FILTER_LENGTH} characters")
    depth = deepest = 0
    quoted = escaped = False
    for char in text:
        if quoted:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            continue
        if char == '"':
            quoted = True
        elif char in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]":
            depth -= 1
    if deepest > MAX_FILTER_DEPTH:
        raise InvalidFilterException(
            detail=f"filter nested deeper than {MAX_FILTER_DEPTH} levels")


_TYPED_VALUE = re.compile(r'^(emails|phoneNumbers)\[type eq "([^"]+)"\]\.value$', re.IGNORECASE)


def typed_value_adds(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Entra ID sets a work e-mail with `add`/`replace` on `emails[type eq "work"].value`;
    when the user has no e-mail of that type yet, nothing matches the filter (scim2-models
    answers 400). Such an operation becomes an `add` of `{"type": ..., "value": ...}`."""
    operations = []
    for op in patch.get("Operations") or []:
        match = _TYPED_VALUE.match(str(op.get("path") or ""))
        if match and str(op.get("op")).lower() in ("add", "replace") and isinstance(
                op.get("value"), str):
            attribute, kind = match.group(1), match.group(2)
            existing = [v for v in current.get(attribute) or []
                        if str(v.get("type", "")).lower() == kind.lower()]
            if not existing:
                op = {"op": "add", "path": attribute,
                      "value": [{"type": kind, "value": op["value"]}]}
        operations.append(op)
    return {**patch, "Operations": operations}


class HauspostScimService(ScimService):
    def apply_patch(self, current: Resource[Any], patch_op: PatchOp[Any],
                    conditions: Conditions) -> Resource[Any] | None:
        context = Context.RESOURCE_PATCH_REQUEST
        data = patch_op.model_dump(scim_ctx=context)
        rewritten = typed_value_adds(
            current.model_dump(scim_ctx=None, by_alias=True, exclude_none=True), data)
        if rewritten != data:
            patch_op = type(patch_op).model_validate(rewritten, scim_ctx=context)
        return super().apply_patch(current, patch_op, conditions)

    def patch_response(self, base_url: str, resource: Resource[Any],
                       response_parameters: ResponseParameters[Any]) -> ScimResponse:
        # Okta expects 200 with the user after a PATCH; RFC 7644 §3.5.2 allows it (204 is
        # only a MAY), and Entra ID accepts both.
        published = self.publish(base_url, resource)
        return self.resource_response(published, Context.RESOURCE_REPLACEMENT_RESPONSE,
                                      response_parameters)

    def read_search(self, resource_types: list[ResourceType], payload: Any) -> Any:
        if isinstance(payload, dict) and isinstance(payload.get("filter"), str):
            check_filter_complexity(payload["filter"])
        return super().read_search(resource_types, payload)


class ScimApplication(ASGIApplication):
    """Bearer token compared in constant time; the client's name is the audit actor."""

    def __init__(self, storage: HauspostScimStorage, provider: ScimProvider, *, token: str,
                 actor: str) -> None:
        super().__init__(storage, provider, HauspostScimService(provider))
        self._token = token.encode()
        self._actor = actor

    def check_auth(self, request: ScimRequest) -> None:
        scheme, _, presented = (request.header("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(),
                                                                 self._token):
            logger.warning("SCIM %s %s refused: %s bearer token", request.method, request.path,
                           "missing" if not presented else "wrong")
            raise UnauthorizedException(detail="a valid bearer token is required")

    def get_subject(self, request: ScimRequest) -> Any:
        return self._actor

    async def dispatch_request(self, request: ScimRequest) -> Any:
        if self.needs_auth(request):
            self.check_auth(request)
        request.subject = self.get_subject(request)
        reset = current_actor.set(self._actor)
        try:
            return await self.handler.handle(request)
        finally:
            current_actor.reset(reset)


def aiohttp_handler(app: ScimApplication, public_url: str | None) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        base = (public_url or f"{request.scheme}://{request.host}") + PREFIX
        path = request.path[len(PREFIX):] if request.path.startswith(PREFIX) else request.path
        scim_request = ScimRequest(method=request.method, base_url=base, path=path or "/",
                                   query=dict(request.query), headers=list(request.headers.items()),
                                   body=await request.read())
        response = await app.serve(scim_request)
        body = None if response.body is None else json.dumps(response.body).encode()
        out = web.Response(status=int(response.status), body=body)
        for name, value in response.headers.items():
            out.headers[name] = value
        return out

    return handle
