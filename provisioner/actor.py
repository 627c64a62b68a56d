"""Who is acting, for the audit log: the OS user running `hauspost` (or HAUSPOST_ACTOR)."""

from __future__ import annotations

import getpass
import os
import socket


def current_actor() -> str:
    # A wrapper (cron job, web front end) names the real person via HAUSPOST_ACTOR.
    override = os.environ.get("HAUSPOST_ACTOR", "").strip()
    if override:
        return override[:255]
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"[:255]
