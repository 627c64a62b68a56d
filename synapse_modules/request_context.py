"""The HTTP request Synapse is serving right now, read from its logging context.

There is no module API for it. `synapse.logging.context.current_context().request` is a
`ContextRequest` with the method and the (redacted) URI of the request that started the
work; it is set for every HTTP request and follows Synapse's own background work it
spawns. Our modules read it only here; the import and the attribute are checked when a
module loads, so a Synapse that changes them refuses to start instead of letting a
policy decide on nothing.
"""

from __future__ import annotations

from synapse.logging.context import current_context


def current_request_path() -> str | None:
    """The path of the request being served (no query string), or None outside a request."""
    request = getattr(current_context(), "request", None)
    if request is None:
        return None
    url = request.url
    if not isinstance(url, str):
        raise TypeError(f"ContextRequest.url is {type(url).__name__}, expected str")
    return url.partition("?")[0]
