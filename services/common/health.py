"""Health endpoints for services without an HTTP API of their own (trainer, simulator), so a
container orchestrator can wait for them like for the others.

GET /healthz answers 200 while the process runs; GET /readyz answers 200 once the service says
it is ready (503 before); GET /metrics serves the process's Prometheus metrics. A stdlib HTTP
server in a daemon thread: it never touches the service's event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["RESTART_EXIT_CODE", "HealthServer"]

# A service that exits with this code asks its supervisor to start it again at once: a planned
# restart, not a crash (EX_TEMPFAIL). `admuse demo`/`up` count it as a restart without back-off
# or give-up; Docker Compose's restart policy restarts it like any exit.
RESTART_EXIT_CODE = 75


class HealthServer:
    def __init__(self, host: str, port: int, ready: Callable[[], bool]) -> None:
        self._ready = ready
        server = self

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body, ctype = server.answer(self.path.split("?", 1)[0])
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # health polls are not news
                pass

        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def answer(self, path: str) -> tuple[int, bytes, str]:
        if path == "/healthz":
            return 200, b'{"status":"ok"}', "application/json"
        if path == "/readyz":
            ready = self._ready()
            return (
                (200 if ready else 503),
                b'{"ready":%s}' % (b"true" if ready else b"false"),
                "application/json",
            )
        if path == "/metrics":
            return 200, generate_latest(), CONTENT_TYPE_LATEST
        return 404, b'{"error":"not found"}', "application/json"

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
