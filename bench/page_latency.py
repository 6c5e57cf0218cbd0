"""Failure to first page, with a real `serve` (web, alert path, 2 jobs workers) on PostgreSQL.

Three HTTP checks with the shipped API check's settings (interval 30 s, timeout 5 s,
3 retries, retry interval 10 s) watch three local services; a webhook channel
pages a local receiver. Each service is killed right after a passing check (the
worst moment: the failure is first seen a whole interval later), and the time
from the kill to the page's arrival is measured:

- idle;
- with four long jobs running at once on the jobs workers (CPU-bound tasks, two
  running and two waiting: both workers and both cores busy);
- right after a SIGKILL of the alert path and the jobs worker (serve restarts them).

Then the jobs worker or the alert path is SIGKILLed with work in hand, and the
time from the death to the reconciler's verdict is measured for each kind of
stranded record: a running backup, a running failover run (the approval frame
that restores and rollbacks share), an approved run whose task the dead cluster
had taken, and a notification in flight to a slow receiver.

Targets: first page <= interval + (retries - 1) x retry interval + 5 s = 55 s, and
the same with the long jobs as idle (median within 10 %); every verdict within
2 minutes of the death.  Usage: python bench/page_latency.py [kills per scenario]
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import ROOT, console_database, machine, start, stop

ARGS = [a for a in sys.argv[1:] if not a.startswith("--")]
KILLS = int(ARGS[0]) if ARGS else 5
# --verdicts-only: just the stranded-work part (a few minutes instead of a quarter hour).
PAGES = "--verdicts-only" not in sys.argv
INTERVAL, TIMEOUT, RETRIES, RETRY_INTERVAL = 30, 5, 3, 10
BOUND = INTERVAL + (RETRIES - 1) * RETRY_INTERVAL + 5
SERVICES = 3
HEARTBEATS: dict[str, float] = {}  # the worst heartbeat ages while the long jobs ran


class Receiver(BaseHTTPRequestHandler):
    """Records when each page arrives; /slow answers only after 30 s."""

    pages: list[tuple[float, dict]] = []
    lock = threading.Lock()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        with self.lock:
            self.pages.append((time.monotonic(), {**body, "path": self.path,
                                                  "key": self.headers.get("Idempotency-Key")}))  # fmt: skip
        if self.path == "/slow":
            time.sleep(30)
        try:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")
        except BrokenPipeError:
            pass  # the sender was killed while waiting: that is the point

    def log_message(self, *args):
        pass


def free_port() -> int:
    from tests.pgserver import free_port as port

    return port()


def service(port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "deployments.sample_service", str(port)], cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait(predicate, timeout: float, every: float = 0.2):
    from tests.helpers import wait_for

    return wait_for(predicate, timeout, every)


class Console:
    def __init__(self, env: dict[str, str], log: Path):
        self.log = log
        self.port = free_port()
        self.process = start(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(self.port)], env, log
        )

    def pid(self, name: str) -> int:
        text = self.log.read_text()
        first = re.search(r"alert path pid (\d+), worker pid (\d+)", text)
        pids = {"alert path": int(first[1]), "worker": int(first[2])}
        for which, pid in re.findall(r"(alert path|worker) restarted \(pid (\d+)\)", text):
            pids[which] = int(pid)
        return pids[name]

    def kill(self, name: str) -> None:
        os.killpg(self.pid(name), signal.SIGKILL)


def page_times(services, ports, checks, before_kill=None) -> list[float]:
    """Kill each service at a random moment of its check's cycle; time kill → page."""
    from dr.models import ServiceCheck

    latencies: list[float] = []
    while len(latencies) < KILLS:
        assert wait(lambda: all(
            c.state == "healthy" for c in ServiceCheck.objects.filter(pk__in=checks)), 120), "not healthy"  # fmt: skip
        killed: dict[int, float] = {}
        if before_kill:
            before_kill()
        for index in range(SERVICES):
            # The worst moment to die: right after a passing check, so the failure is
            # seen a whole interval later. Every kill is at the same phase, so runs compare.
            seen = ServiceCheck.objects.get(pk=checks[index]).last_checked_at
            wait(lambda i=index, seen=seen: ServiceCheck.objects.get(pk=checks[i]).last_checked_at
                 != seen, INTERVAL + 10, every=0.05)  # fmt: skip
            services[index].send_signal(signal.SIGKILL)
            services[index].wait()
            killed[index] = time.monotonic()
        for index, at in killed.items():
            name = f"svc-{index}"

            def paged(name=name, at=at):
                return next((t for t, p in list(Receiver.pages)
                             if p.get("event") == "firing" and p.get("title", "").startswith(name)
                             and t >= at), None)  # fmt: skip

            arrived = wait(paged, BOUND * 3)
            latencies.append((arrived or float("inf")) - at)
        for index in range(SERVICES):
            services[index] = service(ports[index])
    return latencies[:KILLS]


def burn(seconds: float) -> int:
    """A long CPU-bound job for the jobs workers."""
    import hashlib

    end, rounds, digest = time.monotonic() + seconds, 0, b"x"
    while time.monotonic() < end:
        for _ in range(10000):
            digest = hashlib.sha256(digest).digest()
        rounds += 1
    return rounds


class Heartbeats:
    """Samples the heartbeat ages (jobs worker, alert path) every second: the worst each
    reached while a scenario ran."""

    def __init__(self):
        self.worst: dict[str, float] = {}
        self.stop = threading.Event()
        threading.Thread(target=self.sample, daemon=True).start()

    def sample(self):
        from django.db import connection

        from opsconsole.models import WorkerHeartbeat

        while not self.stop.wait(1.0):
            for role in ("jobs", "alerts"):
                age = WorkerHeartbeat.age(role)
                if age is not None:
                    self.worst[role] = max(self.worst.get(role, 0.0), age.total_seconds())
        connection.close()

    def done(self) -> dict[str, float]:
        self.stop.set()
        return self.worst


def page_scenarios(console, services, ports, checks, results) -> None:
    from django_q.models import OrmQ

    from opsconsole.tasks import enqueue

    results["idle"] = page_times(services, ports, checks)

    def four_long_jobs():
        for _ in range(4):
            enqueue("page_latency.burn", 400.0)

    beats = Heartbeats()
    results["with 4 long jobs"] = page_times(services, ports, checks,
                                             before_kill=four_long_jobs)  # fmt: skip
    HEARTBEATS.update(beats.done())
    # Drop the long jobs still queued and kill the worker running the rest, then kill
    # the alert path and the worker right before the services.
    OrmQ.objects.all().delete()
    console.kill("worker")
    time.sleep(2)

    def kill_workers():
        console.kill("alert path")
        console.kill("worker")

    results["after SIGKILL of the workers"] = page_times(
        services, ports, checks, before_kill=kill_workers
    )


def main() -> None:
    with console_database() as env:
        import psycopg
        from django.utils import timezone

        from alerts.models import (
            Channel,
            EscalationLevel,
            EscalationPolicy,
            Notification,
            PriorityPolicy,
        )
        from backups.models import Backup, DatabaseTarget, StorageLocation
        from dr.models import FailoverAction, FailoverRun, ServiceCheck
        from opsconsole.approvals.models import EXECUTE_TASK
        from opsconsole.tasks import enqueue

        receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=receiver.serve_forever, daemon=True).start()
        hook = f"http://127.0.0.1:{receiver.server_port}"
        Channel.objects.update(enabled=False)
        # Each kill is a new outage of the same service: page it every time (the product
        # holds back a repeat page of one fingerprint within the priority's cooldown).
        PriorityPolicy.objects.update(cooldown_minutes=0)
        channel = Channel.objects.create(name="pager", kind="webhook", secret="s", priorities=["critical", "high"],
                                         config={"url": f"{hook}/page"})  # fmt: skip
        EscalationPolicy.objects.update(is_default=False)
        policy = EscalationPolicy.objects.create(name="bench", is_default=True)
        EscalationLevel.objects.create(policy=policy, position=0, delay_minutes=0).channels.set(
            [channel]
        )
        ports = [free_port() for _ in range(SERVICES)]
        services = [service(p) for p in ports]
        ServiceCheck.objects.all().delete()
        checks = [
            ServiceCheck.objects.create(
                name=f"svc-{i}", kind="http", config={"url": f"http://127.0.0.1:{p}/health"},
                interval_seconds=INTERVAL, timeout_seconds=TIMEOUT, retries=RETRIES,
                retry_interval_seconds=RETRY_INTERVAL,
            ).pk
            for i, p in enumerate(ports)
        ]  # fmt: skip
        run_env = {**env, "OPSCONSOLE_OUTBOUND_ALLOW": "127.0.0.0/8", "Q_WORKERS": "2",
                   "WEB_CONCURRENCY": "1", "PYTHONPATH": str(ROOT / "bench")}  # fmt: skip
        log = Path(env["OPSCONSOLE_VAR_DIR"]) / "serve.log"
        console = Console(run_env, log)
        results: dict[str, list[float]] = {}
        try:
            if PAGES:
                page_scenarios(console, services, ports, checks, results)
            else:
                assert wait(lambda: "worker pid" in log.read_text(), 60), "serve did not start"

            # --- Stranded work: death → the reconciler's verdict --------------------------
            admin = env["BENCH_PG_ADMIN_URL"]
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("DROP DATABASE IF EXISTS bench_big")
                conn.execute("CREATE DATABASE bench_big")
            big = admin.rsplit("/", 1)[0] + "/bench_big"
            with psycopg.connect(big, autocommit=True) as conn:
                conn.execute("CREATE TABLE blob AS SELECT g, md5(g::text) AS x "
                             "FROM generate_series(1, 100000) g")  # fmt: skip
            # pg_dump waits for this lock: the backup is running (and its lease renewed)
            # for as long as the bench holds it, as a dump of a big database would be.
            locker = psycopg.connect(big)
            locker.execute("LOCK TABLE blob IN ACCESS EXCLUSIVE MODE")
            target = DatabaseTarget.objects.create(name="big", engine="postgresql", dsn=big,
                                                   exclude_table_data=[])  # fmt: skip
            storage = StorageLocation.objects.create(
                name="bench", kind="local", config={"path": str(Path(env["OPSCONSOLE_VAR_DIR"]) / "store")}
            )  # fmt: skip
            slow = FailoverAction.objects.create(name="slow", kind="command",
                                                 config={"argv": ["sleep", "600"], "timeout_seconds": 900})  # fmt: skip
            backup = Backup.objects.create(target=target, storage=storage)
            running = FailoverRun.objects.create(
                action=slow, status="approved", decided_at=timezone.now()
            )
            enqueue("backups.tasks.run_backup", backup.pk)
            enqueue(EXECUTE_TASK, "dr.FailoverRun", running.pk)
            assert wait(lambda: Backup.objects.get(pk=backup.pk).status == "running"
                        and FailoverRun.objects.get(pk=running.pk).status == "running", 60)  # fmt: skip
            verdicts: dict[str, float] = {}
            # The one waiting: the dead cluster had taken it (workers were full).
            waiting = FailoverRun.objects.create(
                action=FailoverAction.objects.create(name="quick", kind="command", config={"argv": ["true"]}),
                status="approved", decided_at=timezone.now(),
            )  # fmt: skip
            enqueue(EXECUTE_TASK, "dr.FailoverRun", waiting.pk)
            time.sleep(3)
            console.kill("worker")
            died = timezone.now()

            locker.close()

            def settled(model, pk, statuses, field):
                row = model.objects.get(pk=pk)
                return row if row.status in statuses else None

            def after_death(row, field) -> float:
                return (getattr(row, field) - died).total_seconds() if row else float("inf")

            b = wait(lambda: settled(Backup, backup.pk, {"failed"}, "finished_at"), 300)
            verdicts["running backup → failed"] = after_death(b, "finished_at")
            r = wait(lambda: settled(FailoverRun, running.pk, {"failed"}, "finished_at"), 300)
            verdicts["running failover run → failed"] = after_death(r, "finished_at")
            w = wait(lambda: settled(FailoverRun, waiting.pk, {"succeeded", "running"}, ""), 300)
            verdicts["approved run, task lost → run"] = after_death(w, "started_at")

            # A notification in flight to a receiver that takes 30 s to answer.
            Channel.objects.filter(pk=channel.pk).update(config={"url": f"{hook}/slow"})
            n = Notification.objects.create(channel=channel, event=Notification.Event.TEST)
            assert wait(lambda: Notification.objects.get(pk=n.pk).status == "sending", 30), (
                Notification.objects.filter(pk=n.pk).values().first(),
                log.read_text()[-3000:],
            )

            def test_sends() -> list[dict]:
                # Only this notification: incidents raised meanwhile page the same channel.
                return [
                    p
                    for _, p in Receiver.pages
                    if p["path"] == "/slow" and p.get("event") == "test"
                ]

            before = len(test_sends())
            console.kill("alert path")
            killed_at = time.monotonic()
            again = wait(
                lambda: len([p for _, p in Receiver.pages if p["path"] == "/slow"]) > before, 300
            )
            verdicts["notification in flight → sent again"] = (
                (time.monotonic() - killed_at) if again else float("inf")
            )
            keys = {p["key"] for p in test_sends()}
        finally:
            stop(console.process)
            for s in services:
                s.kill()
            receiver.shutdown()

        print(f"machine: {machine()}")
        print(f"checks: interval {INTERVAL} s, timeout {TIMEOUT} s, {RETRIES} retries, "
              f"retry interval {RETRY_INTERVAL} s → bound {BOUND} s; {KILLS} kills each")  # fmt: skip
        idle = statistics.median(results["idle"]) if results else 1.0
        for name, values in results.items():  # empty with --verdicts-only
            median = statistics.median(values)
            print(f"{name:32} min {min(values):5.1f}  median {median:5.1f}  max {max(values):5.1f} s"
                  f"   ratio to idle {median / idle:.2f}   {'PASS' if max(values) <= BOUND else 'FAIL'}")  # fmt: skip
        for name, seconds in verdicts.items():
            print(f"{name:40} {seconds:6.1f} s after the death   "
                  f"{'PASS' if seconds <= 120 else 'FAIL'} (target 120 s)")  # fmt: skip
        print(f"the re-sent notification carried the same Idempotency-Key: {len(keys) == 1}")
        if HEARTBEATS:
            print(
                "worst heartbeat age while the long jobs ran: "
                + ", ".join(f"{role} {age:.0f} s" for role, age in sorted(HEARTBEATS.items()))
                + f"   {'PASS' if max(HEARTBEATS.values()) <= 30 else 'FAIL'} (never stale: <= 30 s)"
            )
        busy = statistics.median(results.get("with 4 long jobs") or [idle]) / idle
        print(
            f"long jobs vs idle: {busy:.2f} ({'PASS' if busy <= 1.10 else 'FAIL'}, target <= 1.10)"
        )


if __name__ == "__main__":
    main()
