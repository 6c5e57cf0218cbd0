import json

from django.core.management.base import BaseCommand, CommandError

from backups.errors import BackupError, RestoreRefused
from backups.models import Backup
from backups.restore import restore_into


class Command(BaseCommand):
    help = (
        "Restore a backup into a NEW database on its target's server (never over an existing one)."
    )

    def add_arguments(self, parser):
        parser.add_argument("backup_id")
        parser.add_argument("--into", required=True, help="the new database's name")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, backup_id: str, into: str, json: bool = False, **options):
        backup = Backup.objects.filter(pk=backup_id).first()
        if backup is None:
            raise CommandError(f"no backup {backup_id!r}")
        try:
            result = restore_into(backup, into)
        except RestoreRefused as exc:
            raise CommandError(f"refused, nothing was created: {exc}") from None
        except BackupError as exc:
            raise CommandError(f"restore failed, {into} was dropped: {exc.message}") from None
        self.stdout.write(_json(result) if json else f"restored {backup.id} into {into}")


def _json(result: dict) -> str:
    return json.dumps(result, indent=2)
