"""Run the web server and one django-q2 cluster together, supervised.

If either child dies the other is stopped and the command exits non-zero with
the reason; SIGTERM or Ctrl-C stops both and leaves no process behind: each
child leads its own process group, the leaders are asked to stop, and any
process still left in a group is killed at the end.
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


class Child:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]):
        self.name = name
        self.argv = argv
        self.process = subprocess.Popen(  # noqa: S603 - argv list, no shell
            argv, env=env, cwd=settings.BASE_DIR, start_new_session=True
        )

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
        failure = None
        try:
            while not stop_requested:
                dead = next((c for c in children if c.exit_code() is not None), None)
                if dead is not None:
                    failure = f"the {dead.name} exited with code {dead.exit_code()}"
                    break
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
