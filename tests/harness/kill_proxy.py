"""A reverse proxy in front of Synapse that SIGKILLs a process at an exact point: right
after Synapse has answered a chosen request, before the answer reaches the process.

For the fault suite's deterministic kill points ("the join reached Synapse, its audit row
was not written yet"): the process under test talks to Synapse through the proxy
(`homeserver.url` in its hauspost.yaml); `arm(match, pid)` makes the next request that
`match`es go to Synapse as usual, and once Synapse's whole answer is in, the proxy kills
`pid` and drops the connection. Nothing in the product knows about it.
"""

from __future__ import annotations

import http.client
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from provisioner.homeserver.synapse_process import free_port

#: (method, path with query, request body) -> whether this is the request to kill after.
Match = Callable[[str, str, bytes], bool]

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate",
                         "proxy-authorization", "te", "trailers", "transfer-encoding",
                         "upgrade", "content-length", "host"})


@dataclass
class Fired:
    method: str
    path: str
    body: bytes
    status: int


class KillProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.port = free_port()
        self._lock = threading.Lock()
        self._armed: tuple[Match, int] | None = None
        self.fired: Fired | None = None
        self.fired_event = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _forward(self) -> None:
                body = self._body()
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in _HOP_BY_HOP}
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port,
                                                  timeout=300)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    answer_headers = [(k, v) for k, v in resp.getheaders()
                                      if k.lower() not in _HOP_BY_HOP]
                    status, reason = resp.status, resp.reason
                finally:
                    conn.close()
                if proxy._take(self.command, self.path, body, status):
                    self.close_connection = True
                    return  # the answer never reaches the killed process
                self.send_response(status, reason)
                for key, value in answer_headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _forward  # noqa: N815

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def arm(self, match: Match, pid: int) -> None:
        """Kill `pid` after Synapse answered the next request that matches (once)."""
        with self._lock:
            self._armed = (match, pid)
            self.fired = None
            self.fired_event.clear()

    def disarm(self) -> None:
        with self._lock:
            self._armed = None

    def _take(self, method: str, path: str, body: bytes, status: int) -> bool:
        with self._lock:
            if self._armed is None or not self._armed[0](method, path, body):
                return False
            pid = self._armed[1]
            self._armed = None
            os.kill(pid, signal.SIGKILL)
            self.fired = Fired(method, path, body, status)
        self.fired_event.set()
        return True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def kill_proxy(upstream: str) -> Iterator[KillProxy]:
    proxy = KillProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()
