from django.core.management.base import BaseCommand
from django.utils import timezone

from backups.models import BackupKey
from opsconsole.fields import reveal


class Command(BaseCommand):
    help = "Print the age identity backups are encrypted to, for the operators' vault."

    def handle(self, *args, **options):
        key = BackupKey.current()
        self.stdout.write(reveal(key.identity))
        BackupKey.objects.filter(pk=key.pk).update(exported_at=timezone.now())
        self.stderr.write(
            f"This is the secret key for recipient {key.recipient}. Store it offline: with it, "
            "age -d -i key.txt restores any backup even when the console is down."
        )
