from django.core.management.base import BaseCommand

from backups.models import BackupKey


class Command(BaseCommand):
    help = "Make a new age key for new backups; older keys stay so older backups remain readable."

    def handle(self, *args, **options):
        key = BackupKey.rotate()
        self.stdout.write(f"New backups are encrypted to {key.recipient}.")
        self.stdout.write("Export it for the vault: manage.py export_backup_identity")
