"""Console sessions, kept on the server: the cookie holds only a random id.

A session starts anonymous (the sign-in form's CSRF token lives in it) and gets a *new* id
at sign-in, so an id planted before sign-in is worth nothing after it. Idle sessions end;
sign-out ends the id at once, so a copied cookie stops working with it.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class ConsoleSession:
    sid: str
    csrf: str
    last_seen: float
    user_id: str | None = None
    employee_id: str | None = None
    display_name: str = ""
    roles: frozenset[str] = field(default_factory=frozenset)
    #: One-shot messages for the next page (post/redirect/get).
    flash: list[str] = field(default_factory=list)


class SessionStore:
    """In memory: `hauspost serve` is one process; a restart signs everybody out."""

    def __init__(self, idle_seconds: float, *, max_sessions: int = 20_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self.clock = clock
        self._sessions: OrderedDict[str, ConsoleSession] = OrderedDict()

    def _new(self) -> ConsoleSession:
        session = ConsoleSession(sid=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32),
                                 last_seen=self.clock())
        self._sessions[session.sid] = session
        while len(self._sessions) > self.max_sessions:
            # The least recently used goes first; anonymous form sessions are cheap to lose.
            self._sessions.popitem(last=False)
        return session

    def anonymous(self) -> ConsoleSession:
        return self._new()

    def get(self, sid: str | None) -> ConsoleSession | None:
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > self.idle_seconds:
            del self._sessions[sid]
            return None
        session.last_seen = now
        self._sessions.move_to_end(sid)
        return session

    def sign_in(self, old: ConsoleSession, *, user_id: str, employee_id: str,
                display_name: str, roles: frozenset[str]) -> ConsoleSession:
        self._sessions.pop(old.sid, None)
        session = self._new()
        session.user_id, session.employee_id = user_id, employee_id
        session.display_name, session.roles = display_name, roles
        return session

    def end(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def end_user(self, user_id: str) -> int:
        """End every session of one person (offboarded, lost their role)."""
        doomed = [sid for sid, s in self._sessions.items() if s.user_id == user_id]
        for sid in doomed:
            del self._sessions[sid]
        return len(doomed)

    def __len__(self) -> int:
        return len(self._sessions)


class LoginLimiter:
    """At most `attempts` failed sign-ins per key (account, client address) per window."""

    def __init__(self, attempts: int, window_seconds: float, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.window = window_seconds
        self.clock = clock
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str) -> list[float]:
        cutoff = self.clock() - self.window
        times = [t for t in self._failures.get(key, ()) if t > cutoff]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def retry_after(self, *keys: str) -> float:
        """Seconds until another attempt is allowed for all keys; 0: allowed now."""
        wait = 0.0
        for key in keys:
            times = self._recent(key)
            if len(times) >= self.attempts:
                wait = max(wait, times[-self.attempts] + self.window - self.clock())
        return wait

    def failed(self, *keys: str) -> None:
        now = self.clock()
        for key in keys:
            self._failures.setdefault(key, []).append(now)

    def succeeded(self, account_key: str) -> None:
        self._failures.pop(account_key, None)
