"""Stream the WAL of every target with continuous WAL: `manage.py walreceiver`.

`serve` runs it next to the web and worker processes; a deployment that scales
them apart runs it on its own (one is enough; a second stands by per target).
SIGTERM ships what was received and stops.
"""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand

from backups.wal import run_receivers


class Command(BaseCommand):
    help = "Stream and ship the WAL of every target with continuous WAL."

    def add_arguments(self, parser):
        parser.add_argument(
            "--rescan", type=float, default=30.0,
            help="seconds between looks for newly enabled targets (default 30)",
        )  # fmt: skip

    def handle(self, *args, rescan: float, **options):
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write("walreceiver: streaming WAL of every target with continuous WAL")
        run_receivers(stop, rescan_seconds=rescan)
