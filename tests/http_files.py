"""A loopback HTTP server (127.0.0.1, a free port) that serves bytes from a dict, for download tests.

`server.files["/x.zip"] = data` publishes a file; unknown paths answer 404. Range requests get
206 answers, so resumed downloads work. A path under `/truncated/` announces the whole file but
sends only half of it, then hangs up, every time. `server.answers["/x.zip"] = rule` scripts a
path's misbehaviour: `rule(hit)` (hit: 1 for its first request) gives an HTTP status to answer
with, or the keyword arguments of `respond` (`ranged`, `truncate`, `stall`) for that request.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRUNCATED = "/truncated"


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.answers: dict[str, Callable[[int], int | dict]] = {}
        self.lock = threading.Lock()
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)

    def handle_error(self, request, client_address) -> None:
        pass  # clients hang up on truncated answers; keep the output quiet

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def hits(self, path: str) -> int:
        with self.lock:
            return sum(1 for p, _ in self.requests if p == path)

    def ranges(self, path: str) -> list[str | None]:
        """The Range header of each request for `path` (None where there was none), in order."""
        with self.lock:
            return [r for p, r in self.requests if p == path]


class _Handler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append((self.path, self.headers.get("Range")))
            hit = sum(1 for p, _ in self.server.requests if p == self.path)
        path = self.path
        truncate = path.startswith(TRUNCATED + "/")
        body = self.server.files.get(path[len(TRUNCATED):] if truncate else path)
        rule = self.server.answers.get(path)
        how = rule(hit) if rule else {}
        if isinstance(how, int):
            self._status(how)
        elif body is None:
            self._status(404)
        else:
            respond(self, body, **{"truncate": truncate, **how})

    def _status(self, code: int) -> None:
        body = f"status {code}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def respond(
    handler: BaseHTTPRequestHandler, body: bytes, *, ranged: bool = True, truncate: bool = False, stall: float = 0.0
) -> None:
    """Answer with `body`: from the Range start with 206 when `ranged` (416 past the end), else 200.

    `truncate`: announce the whole length, send half, hang up. `stall`: go quiet for that many
    seconds halfway through (for client time-outs).
    """
    start = 0
    header = handler.headers.get("Range")
    if ranged and header:
        match = re.fullmatch(r"bytes=(\d+)-", header)
        assert match, header
        start = int(match.group(1))
        if start >= len(body):
            handler.send_response(416)
            handler.send_header("Content-Range", f"bytes */{len(body)}")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        handler.send_response(206)
        handler.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
    else:
        handler.send_response(200)
    payload = body[start:]
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    if truncate:
        payload = payload[: len(payload) // 2]
    handler.close_connection = True
    try:
        if stall:
            half = len(payload) // 2
            handler.wfile.write(payload[:half])
            handler.wfile.flush()
            time.sleep(stall)
            payload = payload[half:]
        handler.wfile.write(payload)
    except OSError:
        pass  # the client hung up (truncation and time-out tests)


@contextlib.contextmanager
def running(server: ThreadingHTTPServer) -> Iterator[ThreadingHTTPServer]:
    """Serve from a daemon thread for the duration of the block, then shut down and close."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
