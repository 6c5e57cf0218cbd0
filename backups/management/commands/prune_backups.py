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
        wal = retention.wal_due_for_deletion() if dry_run else {}
        for archive, segments in wal.items():
            self.stdout.write(
                f"{verb} {len(segments)} WAL segment(s) of {archive.target.name}: "
                f"{segments[0].name} to {segments[-1].name} (older than the oldest kept base "
                "backup needs)"
            )
        self.stdout.write(f"{len(rows)} backup(s) {verb}.")
