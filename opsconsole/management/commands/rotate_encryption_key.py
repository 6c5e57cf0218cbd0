"""Re-encrypt every encrypted value with the first key of OPSCONSOLE_ENCRYPTION_KEYS.

Rotation: put the new key first (keep the old ones after it), run this, then
remove the old keys. Each model is rewritten in one transaction; a value that
cannot be decrypted stops the command before anything of that model changes.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from opsconsole.crypto import DecryptionError
from opsconsole.fields import encrypted_fields


class Command(BaseCommand):
    help = "Re-encrypt every stored secret with the current (first) encryption key."

    def handle(self, *args, **options):
        by_model: dict = {}
        for field in encrypted_fields():
            by_model.setdefault(field.model, []).append(field.attname)
        total = 0
        for model, names in by_model.items():
            try:
                with transaction.atomic(using=model._default_manager.db):
                    count = 0
                    rows = model._base_manager.select_for_update().values_list("pk", *names)
                    # Secrets are few (channels, targets); reading them first keeps
                    # SQLite from seeing its own updates mid-iteration.
                    for pk, *values in list(rows):
                        changes = {n: v for n, v in zip(names, values, strict=True) if v}
                        if changes:
                            model._base_manager.filter(pk=pk).update(**changes)
                            count += len(changes)
            except DecryptionError as exc:
                raise CommandError(
                    f"{model._meta.label}: {exc}; nothing of this model was changed"
                ) from None
            total += count
            self.stdout.write(f"{model._meta.label}: re-encrypted {count} value(s)")
        self.stdout.write(
            self.style.SUCCESS(f"Re-encrypted {total} value(s) with the current key.")
        )
