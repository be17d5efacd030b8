"""A scripted HTTP server on 127.0.0.1 and a fake sleep, for the download and fetch tests."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    content_length: bool = True  # False: body ends when the connection closes
    trickle: float = 0.0  # > 0: send the body one byte at a time, this many seconds apart


class ScriptedServer:
    """Serves ``routes[path]``: one Reply, or a list played in order (the last one repeats).

    Answers GET and POST alike; ``bodies[path]`` keeps every POST body received.
    """

    def __init__(self, routes: dict[str, Reply | list[Reply]]) -> None:
        self.routes = routes
        self.hits: Counter[str] = Counter()
        self.bodies: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with server._lock:
                    server.bodies.setdefault(self.path, []).append(body)
                self.do_GET()

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with server._lock:
                    n = server.hits[self.path]
                    server.hits[self.path] += 1
                script = server.routes.get(self.path, Reply(404, b"not found"))
                reply = script[min(n, len(script) - 1)] if isinstance(script, list) else script
                time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                if reply.content_length:
                    self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                try:
                    if reply.trickle:
                        for i in range(len(reply.body)):
                            self.wfile.write(reply.body[i:i + 1])
                            self.wfile.flush()
                            time.sleep(reply.trickle)
                    else:
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (too_large): expected

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FakeSleep:
    """Records backoff waits instead of sleeping, so tests never wait on a clock."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class RateLimitedServer(ScriptedServer):
    """A :class:`ScriptedServer` that answers 429 once clients ask faster than ``per_second``:
    a token bucket of ``per_second`` tokens refilled at ``per_second``/s, as CDNs do; a 429
    costs no token. ``throttled`` counts the 429s sent."""

    def __init__(self, routes: dict[str, Reply | list[Reply]], per_second: float,
                 retry_after: str | None = None) -> None:
        super().__init__(routes)
        self.per_second = per_second
        self.throttled = 0
        self._tokens = per_second
        self._refilled = time.monotonic()
        self._retry_after = retry_after
        handler = self.httpd.RequestHandlerClass
        server = self
        serve = handler.do_GET

        def do_get(self_handler: BaseHTTPRequestHandler) -> None:
            if not server._take_token():
                headers = (("Retry-After", server._retry_after),) if server._retry_after else ()
                with server._lock:
                    server.throttled += 1
                self_handler.send_response(429)
                for name, value in headers:
                    self_handler.send_header(name, value)
                self_handler.send_header("Content-Length", "0")
                self_handler.end_headers()
                return
            serve(self_handler)

        handler.do_GET = do_get  # type: ignore[method-assign]

    def _take_token(self) -> bool:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.per_second,
                               self._tokens + (now - self._refilled) * self.per_second)
            self._refilled = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False
