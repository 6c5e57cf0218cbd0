"""Run the alert path: every alert loop in one process, apart from long work.

One alert path runs per database: a second one started beside it stands by
(a PostgreSQL advisory lock, or a lock file next to a SQLite database) and
takes over when the first one dies. A loop whose tick hangs far beyond its
cadence makes the process exit non-zero, so `serve` (or the platform) restarts
it.
"""

from __future__ import annotations

import contextlib
import fcntl
import signal
import threading
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection

from opsconsole import alertpath

# pg_advisory_lock key: "opsc" "alrt" as two 32-bit halves.
LOCK_KEY = 0x6F707363_616C7274
STOP_WITHIN = 6.0  # serve waits 8 s before it kills


class Leadership:
    """The one-alert-path-per-database lock."""

    def __init__(self):
        self.file = None

    def try_acquire(self) -> bool:
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
                return bool(cursor.fetchone()[0])
        path = Path(str(connection.settings_dict["NAME"]) + ".alertpath.lock")
        self.file = self.file or open(path, "a")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def still_held(self) -> bool:
        """The advisory lock lives as long as its connection: a dropped connection means
        another alert path may have taken over."""
        if connection.vendor != "postgresql":
            return True
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError:
            return False
        return True


class Command(BaseCommand):
    help = (
        "Run health checks, rule evaluation, escalation, notification delivery, the deploy "
        "watch, the heartbeat and the reconciler, each on its own loop (SIGTERM stops them)."
    )

    def handle(self, *args, **options):
        stop = threading.Event()
        previous = {
            s: signal.signal(s, lambda *_: alertpath.halt(stop))
            for s in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            self._run(stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self, stop: threading.Event) -> None:
        leadership = Leadership()
        if not leadership.try_acquire():
            self.stderr.write("opsconsole: another alert path runs on this database; standing by")
            while not stop.wait(5.0):
                if leadership.try_acquire():
                    break
            if stop.is_set():
                return
        loops = alertpath.registered()
        threads = alertpath.run(stop, loops)
        self.stderr.write(
            "opsconsole: alert path running: "
            + ", ".join(f"{loop.name} every {loop.every:g} s" for loop in loops)
        )
        checked = time.monotonic()
        try:
            while not stop.wait(1.0):
                dead = [t.name for t in threads if not t.is_alive()]
                hung = alertpath.hung_loops()
                if dead or hung:
                    # A loop ends only on a bug outside its tick, and a tick that hangs
                    # for minutes will not come back: let serve start us afresh.
                    raise CommandError(f"alert path loops stopped: {', '.join(dead + hung)}")
                if time.monotonic() - checked > 10:
                    checked = time.monotonic()
                    if not leadership.still_held():
                        raise CommandError("lost the database connection that holds the lock")
        finally:
            alertpath.halt(stop)
            deadline = time.monotonic() + STOP_WITHIN
            for thread in threads:
                thread.join(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(Exception):
                connection.close()
        self.stderr.write("opsconsole: alert path stopped")
