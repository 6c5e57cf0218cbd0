"""An incident fanned out to five local webhook channels, one of which never answers.

Target: the four others have it within 2 s, p95 over 100 incidents, with a real
django-q2 cluster (ORM broker on PostgreSQL). Baseline: the same run with all
five channels answering.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import console_database, machine, percentile, start, stop, summary

INCIDENTS = int(sys.argv[1]) if len(sys.argv) > 1 else 100
SPACING = 0.2
TARGET_P95 = 2.0


class Receiver:
    """A webhook endpoint that records when each incident's notification arrived."""

    def __init__(self):
        self.arrivals: dict[int, float] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if body.get("event") == "firing" and body.get("incident_id"):
                    receiver.arrivals.setdefault(body["incident_id"], time.time())
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


class BlackHole:
    """Accepts connections and never answers: the worst kind of peer."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def _accept(self):
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.sock.accept()[0])


def run(label: str, hung: bool, base: int) -> list[float]:
    from alerts.incidents import raise_incident
    from alerts.models import Channel, EscalationLevel, Incident

    receivers = [Receiver() for _ in range(4)]
    fifth = BlackHole() if hung else Receiver()
    Channel.objects.update(enabled=False)
    channels = [
        Channel.objects.create(
            name=f"{label} {i}",
            kind="webhook",
            config={"url": peer.url},
            secret="bench",
            priorities=["critical"],
        )
        for i, peer in enumerate([*receivers, fifth])
    ]
    level = EscalationLevel.objects.get(policy__is_default=True, position=0)
    level.channels.set(channels)
    sent_at: dict[int, float] = {}
    for i in range(INCIDENTS):
        started = time.time()
        incident = raise_incident("bench", f"{label}:{base + i}", f"bench incident {i}", "critical")
        sent_at[incident.pk] = started
        time.sleep(SPACING)
    deadline = time.time() + 60
    while time.time() < deadline and not all(
        all(pk in r.arrivals for r in receivers) for pk in sent_at
    ):
        time.sleep(0.2)
    latencies = [
        max(r.arrivals.get(pk, float("inf")) for r in receivers) - t0 for pk, t0 in sent_at.items()
    ]
    Incident.objects.filter(fingerprint__startswith=f"{label}:").update(status="resolved")
    return latencies


def main() -> None:
    with console_database() as env:
        from alerts.models import EscalationLevel, EscalationPolicy
        from opsconsole.models import WorkerHeartbeat

        EscalationPolicy.objects.filter(is_default=True).first().levels.exclude(position=0).delete()
        assert EscalationLevel.objects.filter(policy__is_default=True).count() == 1
        log = Path(tempfile.mkdtemp()) / "qcluster.log"
        cluster = start([sys.executable, "manage.py", "qcluster"], {**env, "Q_WORKERS": "4"}, log)
        try:
            for _ in range(100):
                if WorkerHeartbeat.objects.exists():
                    break
                time.sleep(0.2)
            healthy = run("healthy", hung=False, base=0)
            with_hung = run("hung", hung=True, base=10_000)
        finally:
            stop(cluster)
        print(f"machine: {machine()}")
        print(
            f"{INCIDENTS} incidents, one every {SPACING} s, 5 webhook channels each, "
            "django-q2 cluster with 4 workers, ORM broker on PostgreSQL"
        )
        print(f"baseline (all five answer): {summary(healthy)}")
        print(f"one channel never answers:  {summary(with_hung)}")
        p95 = percentile(with_hung, 95)
        print(f"ratio p95 hung/baseline: {p95 / percentile(healthy, 95):.2f}")
        verdict = "PASS" if p95 <= TARGET_P95 else "FAIL"
        print(f"target p95 <= {TARGET_P95} s for the four answering channels: {verdict}")


if __name__ == "__main__":
    main()
