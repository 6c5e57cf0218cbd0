"""Run the web server, the alert path and one django-q2 cluster together, supervised.

Three processes: the web server; the alert path (`manage.py alertpath`: checks,
rules, escalation, delivery, the deploy watch, the heartbeat, the reconciler);
and the jobs worker (`manage.py qcluster`: backups, verifies, drills, restores,
rollbacks, failovers). The alert path never waits behind long work. A fourth,
the WAL receiver (`manage.py walreceiver`), starts once a target has continuous
WAL, and is supervised like the alert path and the worker.

The alert path or the worker, when it dies, is started again with backoff
while the web server stays up (`/health/ready` says which is down until it
beats again); after repeated deaths of one of them in a short time, or when the
web server dies, everything is stopped and the command exits non-zero with the
reason. SIGTERM or Ctrl-C stops both and
leaves no process behind: each child leads its own process group, the leaders
are asked to stop, and any process still left in a group is killed at the end.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

GRACE_SECONDS = 8.0
# The WAL receiver runs once a target has continuous WAL (looked for this often).
WAL_LOOK_EVERY = 30.0


def _wal_wanted() -> bool:
    from django.db import DatabaseError

    from backups.models import WalArchive

    try:
        return WalArchive.objects.filter(enabled=True).exists()
    except DatabaseError:  # not migrated yet, or the database is away: look again later
        return False


# A dead worker is started again after 1, 2, 4 … seconds (at most 30); after
# GIVE_UP_CRASHES deaths within GIVE_UP_WINDOW seconds something is wrong that a restart
# will not mend, and serve stops with the reason.
MAX_BACKOFF = 30.0
GIVE_UP_CRASHES = 5
GIVE_UP_WINDOW = 120.0


class Child:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        self.name = name
        self.argv = argv
        self.env = env
        self.process = self._spawn()
        self.crashes: list[float] = []
        self.restart_at: float | None = None

    def _spawn(self) -> subprocess.Popen:
        return subprocess.Popen(  # noqa: S603 - argv list, no shell
            self.argv, env=self.env, cwd=settings.BASE_DIR, start_new_session=True
        )

    def restart(self) -> None:
        # Whatever the dead leader left in its group goes first.
        self.signal_group(signal.SIGKILL)
        self.process = self._spawn()

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        return self.process.poll()

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)


class Command(BaseCommand):
    help = (
        "Start the web server (gunicorn, or the dev server with --dev), the alert path and a "
        "django-q2 cluster."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)))
        parser.add_argument("--host", default=os.environ.get("OPSCONSOLE_HOST", "127.0.0.1"))
        parser.add_argument("--dev", action="store_true", help="Django's dev server, readable logs")
        parser.add_argument(
            "--web-workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", 2))
        )

    def handle(self, *args, port: int, host: str, dev: bool, web_workers: int, **options):
        if not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535, not {port}")
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if dev:
            env["LOG_FORMAT"] = "text"
            web = [sys.executable, manage, "runserver", f"{host}:{port}"]
        else:
            web = [
                sys.executable, "-m", "gunicorn", "opsconsole.wsgi",
                "--bind", f"{host}:{port}",
                "--workers", str(web_workers),
                "--graceful-timeout", str(int(GRACE_SECONDS) - 2),
                "--timeout", "60",
            ]  # fmt: skip
        alert_path = [sys.executable, manage, "alertpath"]
        worker = [sys.executable, manage, "qcluster"]

        stop_requested: list[int] = []

        def request_stop(signum, frame):
            stop_requested.append(signum)

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        web_child = Child("web server", web, env)
        supervised = [Child("alert path", alert_path, env), Child("worker", worker, env)]
        children = [web_child, *supervised]
        self.stderr.write(
            f"opsconsole: serving on http://{host}:{port}/admin/ (web pid {web_child.pid}, "
            f"alert path pid {supervised[0].pid}, worker pid {supervised[1].pid}); "
            "Ctrl-C stops all three"
        )
        failure = None
        wal_looked = 0.0
        try:
            while not stop_requested and failure is None:
                if web_child.exit_code() is not None:
                    # The web server is the service: without it there is nothing to keep up.
                    failure = f"the web server exited with code {web_child.exit_code()}"
                    break
                if len(supervised) == 2 and time.monotonic() - wal_looked >= WAL_LOOK_EVERY:
                    wal_looked = time.monotonic()
                    if _wal_wanted():
                        receiver = Child(
                            "WAL receiver", [sys.executable, manage, "walreceiver"], env
                        )
                        supervised.append(receiver)
                        children.append(receiver)
                        self.stderr.write(f"opsconsole: WAL receiver pid {receiver.pid}")
                for child in supervised:
                    failure = failure or self._supervise(child)
                time.sleep(0.2)
        finally:
            self._stop(children)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failure:
            raise CommandError(f"{failure}; stopped the rest")
        self.stderr.write("opsconsole: stopped")

    def _supervise(self, child: Child) -> str | None:
        """Restart `child` with backoff when it died; the reason to give up, if it is time."""
        now = time.monotonic()
        if child.restart_at is None and child.exit_code() is not None:
            child.crashes = [t for t in child.crashes if now - t < GIVE_UP_WINDOW] + [now]
            if len(child.crashes) >= GIVE_UP_CRASHES:
                return (
                    f"the {child.name} exited {len(child.crashes)} times within "
                    f"{GIVE_UP_WINDOW:.0f} s (last code {child.exit_code()})"
                )
            wait = min(MAX_BACKOFF, 2.0 ** (len(child.crashes) - 1))
            self.stderr.write(
                f"opsconsole: the {child.name} exited with code {child.exit_code()}; "
                f"the web server stays up; restarting the {child.name} in {wait:.0f} s"
            )
            child.restart_at = now + wait
        if child.restart_at is not None and now >= child.restart_at:
            child.restart()
            child.restart_at = None
            self.stderr.write(f"opsconsole: {child.name} restarted (pid {child.pid})")
        return None

    def _stop(self, children: list[Child]) -> None:
        # The leaders (gunicorn's master, qcluster's sentinel) stop their own
        # workers in order; signalling the whole group would race them.
        for child in children:
            if child.exit_code() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for child in children:
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"opsconsole: the {child.name} did not stop in time; killing it")
        # Sweep each group: a leader that exited may leave forked workers behind.
        for child in children:
            child.signal_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=2)
