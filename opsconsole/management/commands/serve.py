"""Run the web server and one django-q2 cluster together, supervised.

A worker that dies is started again with backoff while the web server stays up
(`/health/ready` says the worker is down until it beats again); after repeated
deaths in a short time, or when the web server dies, everything is stopped and
the command exits non-zero with the reason. SIGTERM or Ctrl-C stops both and
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
    help = "Start the web server (gunicorn, or the dev server with --dev) and a django-q2 cluster."

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
        worker = [sys.executable, manage, "qcluster"]

        stop_requested: list[int] = []

        def request_stop(signum, frame):
            stop_requested.append(signum)

        previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        children = [Child("web server", web, env), Child("worker", worker, env)]
        self.stderr.write(
            f"opsconsole: serving on http://{host}:{port}/admin/ "
            f"(web pid {children[0].pid}, worker pid {children[1].pid}); Ctrl-C stops both"
        )
        web, worker_child = children
        failure = None
        crashes: list[float] = []
        restart_at: float | None = None
        try:
            while not stop_requested:
                if web.exit_code() is not None:
                    # The web server is the service: without it there is nothing to keep up.
                    failure = f"the web server exited with code {web.exit_code()}"
                    break
                now = time.monotonic()
                if restart_at is None and worker_child.exit_code() is not None:
                    crashes = [t for t in crashes if now - t < GIVE_UP_WINDOW] + [now]
                    if len(crashes) >= GIVE_UP_CRASHES:
                        failure = (
                            f"the worker exited {len(crashes)} times within "
                            f"{GIVE_UP_WINDOW:.0f} s (last code {worker_child.exit_code()})"
                        )
                        break
                    wait = min(MAX_BACKOFF, 2.0 ** (len(crashes) - 1))
                    self.stderr.write(
                        f"opsconsole: the worker exited with code {worker_child.exit_code()}; "
                        f"the web server stays up; restarting the worker in {wait:.0f} s"
                    )
                    restart_at = now + wait
                if restart_at is not None and now >= restart_at:
                    worker_child.restart()
                    restart_at = None
                    self.stderr.write(f"opsconsole: worker restarted (pid {worker_child.pid})")
                time.sleep(0.2)
        finally:
            self._stop(children)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if failure:
            raise CommandError(f"{failure}; stopped the rest")
        self.stderr.write("opsconsole: stopped")

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
