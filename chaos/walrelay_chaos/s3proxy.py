"""A fault-injecting HTTP proxy in front of an S3-protocol server (moto_server or MinIO).

Each request is passed to a ``decide(method, path, n)`` function that returns what to do with it:

* ``"pass"``: forward it and return the answer;
* ``"503"``: answer ``503 SlowDown`` without forwarding (the store never saw it);
* ``"ambiguous"``: forward it (the store applies it), then hang up without an answer: the client
  cannot tell whether a PUT was stored;
* ``"drop"``: hang up without forwarding (looks the same to the client, but nothing happened);
* ``"slow"``: forward it after a delay.

Loopback only; it runs in daemon threads and stops with ``close()``. The record of what it did
(``events``) lets tests check that the faults actually happened.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)

Decide = Callable[[str, str, int], str]


class _QuietServer(ThreadingHTTPServer):
    """Clients hang up on the proxy all the time under faults (a timed-out PUT, a killed
    primary): not worth a traceback on stderr. Anything else still gets one."""

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class FaultProxy:
    def __init__(self, upstream: str, decide: Decide, *, slow_s: float = 0.3) -> None:
        up = urlsplit(upstream)
        self.upstream_host, self.upstream_port = up.hostname or "127.0.0.1", up.port or 80
        self.decide = decide
        self.slow_s = slow_s
        self.events: list[tuple[str, str, str]] = []  # (action, method, path)
        self._lock = threading.Lock()
        self._count = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy._lock:
                    proxy._count += 1
                    n = proxy._count
                action = proxy.decide(self.command, self.path, n)
                with proxy._lock:
                    proxy.events.append((action, self.command, self.path))
                if action == "503":
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                if action == "drop":
                    self._hang_up()
                    return
                if action == "slow":
                    time.sleep(proxy.slow_s)
                status, headers, data = proxy._forward(self.command, self.path, dict(self.headers), body)
                if action == "ambiguous":
                    self._hang_up()
                    return
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _hang_up(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def count(self, action: str, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for a, m, _ in self.events if a == action and (method is None or m == method))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
