from django.core.management.base import BaseCommand, CommandError

from backups.errors import RestoreRefused
from backups.models import Backup
from backups.verify import verify_backup


class Command(BaseCommand):
    help = "Read a backup back whole: checksum, key, decompression and the archive's contents."

    def add_arguments(self, parser):
        parser.add_argument("backup_id")

    def handle(self, *args, backup_id: str, **options):
        backup = Backup.objects.filter(pk=backup_id).first()
        if backup is None:
            raise CommandError(f"no backup {backup_id!r}")
        try:
            backup = verify_backup(backup)
        except RestoreRefused as exc:
            raise CommandError(f"{backup_id} failed verification: {exc}") from None
        self.stdout.write(f"{backup.id}: verified ({backup.contents() or 'no table of contents'})")
