"""A small HTTP service the local provider runs, in a healthy and a faulty version.

VERSION picks the behaviour: a version containing "faulty" answers 500 to a
share of requests (SAMPLE_ERROR_RATE, default 0.5); one containing "slow"
answers after SAMPLE_DELAY_MS (default 2500). It serves /health, /version,
/metrics and a few API paths (/api/videos/trending, /api/auth/status).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("VERSION", "v1")
ERROR_RATE = float(os.environ.get("SAMPLE_ERROR_RATE", "0.5")) if "faulty" in VERSION else 0.0
DELAY = float(os.environ.get("SAMPLE_DELAY_MS", "2500")) / 1000 if "slow" in VERSION else 0.0


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if DELAY:
            time.sleep(DELAY)
        if self.path == "/version":
            return self._send(200, {"version": VERSION})
        if self.path == "/api/auth/status":
            return self._send(401, {"error": "login required"})
        if ERROR_RATE and random.random() < ERROR_RATE:  # noqa: S311 - simulated failures
            return self._send(500, {"error": "simulated failure", "version": VERSION})
        return self._send(200, {"ok": True, "version": VERSION, "path": self.path})

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main() -> None:
    port = int(sys.argv[1])
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
