"""Is a Synapse internal that a module wraps or calls still shaped as tested? One check for
every module that relies on one (media gate, batched accounts, company directory); each
decides itself what a changed shape means (refuse to start, or keep Synapse's path)."""

from __future__ import annotations

import inspect


def method_problem(owner: object, name: str, params: tuple[str, ...], *,
                   label: str | None = None, exact: bool = False) -> str | None:
    """Why `owner.name` is not a coroutine function whose parameters are `params` (or
    begin with them, unless `exact`); None when it is. `label` names the owner in the
    reason (default: its class name)."""
    where = f"{label or type(owner).__name__}.{name}"
    method = getattr(owner, name, None)
    if method is None or not callable(method):
        return f"{where} is missing"
    if not inspect.iscoroutinefunction(method):
        return f"{where} is no longer a coroutine function"
    try:
        signature = inspect.signature(method)
    except (TypeError, ValueError):
        return f"{where} has no inspectable signature"
    found = tuple(signature.parameters)
    if not exact:
        found = found[:len(params)]
    if found != params:
        return f"{where} takes ({', '.join(found)}) instead of ({', '.join(params)})"
    return None
