from django.core.management.base import BaseCommand

from opsconsole import crypto


class Command(BaseCommand):
    help = "Print a new key for OPSCONSOLE_ENCRYPTION_KEYS (put it first to start rotating)."

    def handle(self, *args, **options):
        self.stdout.write(crypto.generate_key())
