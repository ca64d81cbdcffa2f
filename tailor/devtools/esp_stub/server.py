"""Serving the stub over HTTP: the request handler, :func:`running_esp_stub` (on a background
thread, for tests and benchmarks) and :func:`serve` (in the foreground, for ``tailor esp-stub``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tailor.devtools.esp_stub.api import Request
from tailor.devtools.esp_stub.store import KEEP_MESSAGES
from tailor.devtools.esp_stub.stub import EspStub

# Named as when the stub was one module: the CLI log format prints logger names.
log = logging.getLogger("tailor.devtools.esp_stub")


def _handler(stub: EspStub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: benchmarks post thousands of requests
        # Headers and body are separate writes: with Nagle on, the body waits for the client's
        # delayed ACK (~40 ms a request).
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:  # noqa: N802
            self._serve()

        def do_POST(self) -> None:  # noqa: N802
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            url = urlsplit(self.path)
            headers = {k.lower(): v for k, v in self.headers.items()}
            request = Request(self.command, url.path, self.path, parse_qs(url.query), headers, body)
            reply = stub.handle(request)
            if reply is None:  # read it all, answer nothing: the client cannot know the outcome
                self.close_connection = True
                return
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

    return Handler


@contextmanager
def running_esp_stub(
    port: int = 0, *, host: str = "127.0.0.1", keep: int = KEEP_MESSAGES
) -> Iterator[EspStub]:
    """Serve the stub on a background thread; point ``sendgrid_base_url``, ``mailgun_base_url``
    and ``ses_endpoint_url`` at ``stub.url`` and use the ``STUB_*`` credentials."""
    stub = EspStub(keep)
    server = ThreadingHTTPServer((host, port), _handler(stub))
    stub.url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="esp-stub", daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        server.shutdown()
        server.server_close()


def serve(
    port: int = 8025,
    *,
    host: str = "127.0.0.1",
    keep: int = KEEP_MESSAGES,
    on_ready: Callable[[EspStub], None] | None = None,
) -> None:
    """Run the stub in the foreground until Ctrl-C (for ``tailor`` CLI runs)."""
    with running_esp_stub(port, host=host, keep=keep) as stub:
        if on_ready is not None:
            on_ready(stub)
        log.info("email provider stub listening on %s", stub.url)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            log.info("email provider stub stopped")
