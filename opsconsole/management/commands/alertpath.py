"""Run the alert path: every alert loop in one process, apart from long work."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand

from opsconsole import alertpath


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
        loops = alertpath.registered()
        threads = alertpath.run(stop, loops)
        self.stderr.write(
            "opsconsole: alert path running: "
            + ", ".join(f"{loop.name} every {loop.every:g} s" for loop in loops)
        )
        try:
            while not stop.wait(1.0):
                dead = [t.name for t in threads if not t.is_alive()]
                if dead:
                    # A loop thread only ends on a bug outside its tick: let serve restart us.
                    self.stderr.write(f"opsconsole: alert path loop ended: {', '.join(dead)}")
                    raise SystemExit(1)
        finally:
            alertpath.halt(stop)
            for thread in threads:
                thread.join(timeout=10)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stderr.write("opsconsole: alert path stopped")
