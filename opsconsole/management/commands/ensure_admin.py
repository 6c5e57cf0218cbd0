"""Make sure an admin account exists (used by `make run`).

The name and password come from OPSCONSOLE_ADMIN_USER / OPSCONSOLE_ADMIN_PASSWORD;
without a password one is generated and printed once. An existing account is
left as it is, so a changed password survives restarts.
"""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the admin account if it does not exist yet."

    def handle(self, *args, **options):
        User = get_user_model()
        username = os.environ.get("OPSCONSOLE_ADMIN_USER") or "admin"
        if User.objects.filter(username=username).exists():
            self.stdout.write(f"Admin account {username!r} exists.")
            return
        password = os.environ.get("OPSCONSOLE_ADMIN_PASSWORD")
        generated = not password
        if generated:
            password = secrets.token_urlsafe(15)
        User.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created admin account {username!r} with password: {password}\n"
                    "It is shown only this once; change it after logging in."
                )
            )
        else:
            self.stdout.write(
                f"Created admin account {username!r} (password from OPSCONSOLE_ADMIN_PASSWORD)."
            )
