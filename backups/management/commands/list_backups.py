from django.core.management.base import BaseCommand

from backups.models import Backup


class Command(BaseCommand):
    help = "List backups, newest first."

    def add_arguments(self, parser):
        parser.add_argument("--target", help="only this target")
        parser.add_argument("--limit", type=int, default=50)

    def handle(self, *args, target=None, limit: int = 50, **options):
        rows = Backup.objects.select_related("target", "storage")
        if target:
            rows = rows.filter(target__name=target)
        for b in rows[:limit]:
            self.stdout.write(
                f"{b.id}  {b.status:<9}  {b.target.name:<24}  {b.storage.name:<16}  "
                f"{b.bytes_stored:>12}  {b.created_at:%Y-%m-%d %H:%M}"
            )
