"""`manage.py demo`: a working console on the embedded default, to try every journey.

manage.py demo                               set up (again)
manage.py demo deploy production v1.2-faulty what a pipeline does: deploy, then report
manage.py demo stop                          stop the sample services
"""

from __future__ import annotations

import contextlib
import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from demo import sample as demo


class Command(BaseCommand):
    help = "Set up the demo (or: deploy ENVIRONMENT VERSION; stop)."

    def add_arguments(self, parser):
        parser.add_argument(
            "action", nargs="?", default="setup", choices=["setup", "deploy", "stop"]
        )
        parser.add_argument("args", nargs="*", help="deploy: ENVIRONMENT VERSION")
        parser.add_argument(
            "--password",
            default=os.environ.get("OPSCONSOLE_DEMO_PASSWORD") or None,
            help="one password for alice, bob and carol (default: a new one each, printed)",
        )
        parser.add_argument(
            "--postgres-url",
            default=os.environ.get(
                "OPSCONSOLE_DEMO_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
            ),
            help="a PostgreSQL server for the sample database ('' for none)",
        )
        parser.add_argument(
            "--port",
            type=int,
            default=demo.DEFAULT_PORT,
            help="first of the sample services' ports (uses 13 from there)",
        )

    def handle(self, *args, action, password, postgres_url, port, **options):
        try:
            if action == "deploy":
                if len(args) != 2:
                    raise CommandError("usage: manage.py demo deploy ENVIRONMENT VERSION")
                deployment = demo.deploy(*args)
                self.stdout.write(
                    f"{deployment.version} is live on {deployment.environment}; the console is "
                    "verifying and watching it (Deployments in the admin)."
                )
            elif action == "stop":
                self.stdout.write(f"Stopped the sample services of {demo.stop()} environment(s).")
            else:
                self._setup(password, postgres_url, port)
        except demo.DemoError as exc:
            raise CommandError(str(exc)) from None

    def _setup(self, password, postgres_url, port):
        done = demo.setup(password=password, postgres_url=postgres_url, port=port)
        write = self.stdout.write
        write(self.style.SUCCESS("The demo is ready."))
        write(f"  Console:      {settings.OPSCONSOLE_BASE_URL}/admin/")
        logins = [f"Console: {settings.OPSCONSOLE_BASE_URL}/admin/"]
        for name, secret in done["people"].items():
            role = demo.PEOPLE[name].lower()
            line = f"  {name:<6} ({role}):{' ' * (9 - len(role))}password {secret}"
            write(line)
            logins.append(line.strip())
            if key := done["authenticator_keys"].get(name):
                line = f"  {'':<6}  {'':<9}  authenticator key {key} (add it to a TOTP app)"
                write(line)
                logins.append(f"{name}: authenticator key {key}")
        # The server's log follows at once and scrolls these away: keep them in a file
        # only this account can read.
        saved = settings.VAR_DIR / "demo-logins.txt"
        with contextlib.suppress(FileNotFoundError):
            saved.unlink()
        with os.fdopen(os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write("\n".join(logins) + "\n")
        write(f"  Sign-ins also saved to {saved} (readable only by you).")
        write(f"  Environments: {', '.join(done['environments'])} (sample service v1.1 live)")
        write(f"  Backups of:   {', '.join(done['targets'])}")
        if not done["postgres"]:
            write(
                "  No PostgreSQL server answered at --postgres-url: restores into a new "
                "database need one."
            )
        write("  Notifications go to the Inbox (Alerts → Inbox messages).")
