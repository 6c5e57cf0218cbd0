"""The local provider's traffic splitter: forwards each request to one of the running
versions, chosen by weight. Weights live in a JSON file the provider rewrites:
{"backends": [{"port": 18001, "weight": 90}, {"port": 18002, "weight": 10}]}.
"""

from __future__ import annotations

import json
import random
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WEIGHTS = Path(sys.argv[2]) if len(sys.argv) > 2 else None


def pick() -> int | None:
    try:
        backends = [b for b in json.loads(WEIGHTS.read_text())["backends"] if b["weight"] > 0]
    except (OSError, ValueError, KeyError):
        return None
    if not backends:
        return None
    return random.choices([b["port"] for b in backends], weights=[b["weight"] for b in backends])[0]  # noqa: S311 - traffic split, not a secret


class Router(BaseHTTPRequestHandler):
    def do_GET(self):
        port = pick()
        if port is None:
            return self._reply(503, b'{"error": "no backend"}', "application/json")
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{port}{self.path}", timeout=30
            ) as upstream:
                return self._reply(
                    upstream.status, upstream.read(), upstream.headers.get("Content-Type", "")
                )
        except urllib.error.HTTPError as exc:
            return self._reply(exc.code, exc.read(), exc.headers.get("Content-Type", ""))
        except OSError:
            return self._reply(502, b'{"error": "backend down"}', "application/json")

    def _reply(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Router)
    server.daemon_threads = True
    server.serve_forever()
