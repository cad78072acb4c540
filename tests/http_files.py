"""A loopback HTTP server (127.0.0.1, a free port) that serves bytes from a dict, for download tests.

`server.files["/x.zip"] = data` publishes a file; unknown paths answer 404. Range requests get
206 answers, so resumed downloads work. A path under `/truncated/` announces the whole file but
sends only half of it, then hangs up, every time.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TRUNCATED = "/truncated"


class FileServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.requests: list[str] = []

    def handle_error(self, request, client_address) -> None:
        pass  # clients hang up on truncated answers; keep the output quiet

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"

    def hits(self, path: str) -> int:
        with self.lock:
            return self.requests.count(path)


class _Handler(BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.requests.append(self.path)
        path = self.path
        truncate = path.startswith(TRUNCATED + "/")
        body = self.server.files.get(path[len(TRUNCATED):] if truncate else path)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and int(match.group(1)) < len(body):
            start = int(match.group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.close_connection = True
        try:
            self.wfile.write(payload[: len(payload) // 2] if truncate else payload)
        except OSError:
            pass
