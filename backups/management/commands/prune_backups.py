from django.core.management.base import BaseCommand

from backups import retention


class Command(BaseCommand):
    help = "Delete backups that outlived their policy's retention (never the newest verified one)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="only list what would be deleted"
        )

    def handle(self, *args, dry_run: bool = False, **options):
        rows = retention.prune(dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        for backup in rows:
            when = f"{backup.created_at:%Y-%m-%d}"
            self.stdout.write(f"{verb} {backup.id} ({backup.target.name}, {backup.kind}, {when})")
        self.stdout.write(f"{len(rows)} backup(s) {verb}.")
