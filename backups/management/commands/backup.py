import json

from django.core.management.base import BaseCommand, CommandError
from psycopg.conninfo import conninfo_to_dict

from backups.backup import back_up
from backups.engines import ENGINES, engine_for_dsn
from backups.models import Backup, DatabaseTarget, StorageLocation


class Command(BaseCommand):
    help = "Back up a database target now (or a DSN, creating or reusing a target for it)."

    def add_arguments(self, parser):
        parser.add_argument("target", nargs="?", help="the target's name")
        parser.add_argument(
            "--dsn", help="a database URL instead of a named target (read from here only)"
        )
        parser.add_argument(
            "--storage", help="the storage location's name (default: the local folder)"
        )
        parser.add_argument("--json", action="store_true", help="print the backup record as JSON")

    def handle(self, *args, target=None, dsn=None, storage=None, json: bool = False, **options):
        if bool(target) == bool(dsn):
            raise CommandError("name a target or give --dsn (one of them)")
        if dsn:
            row = DatabaseTarget.objects.filter(name=_dsn_name(dsn)).first()
            if row is None:
                engine = engine_for_dsn(dsn)
                if engine is None:
                    raise CommandError(f"bad --dsn: no engine for it (known: {', '.join(ENGINES)})")
                row = DatabaseTarget(name=_dsn_name(dsn), engine=engine, dsn=dsn)
                try:
                    row.full_clean()
                except Exception as exc:
                    raise CommandError(f"bad --dsn: {_first_error(exc)}") from None
                row.save()
        else:
            row = DatabaseTarget.objects.filter(name=target).first()
            if row is None:
                names = (
                    ", ".join(DatabaseTarget.objects.values_list("name", flat=True)) or "none yet"
                )
                raise CommandError(f"no target named {target!r} (targets: {names})")
        location = (
            StorageLocation.objects.filter(name=storage).first()
            if storage
            else StorageLocation.default()
        )
        if location is None:
            raise CommandError(f"no storage location named {storage!r}")
        backup = back_up(
            Backup.objects.create(target=row, storage=location, trigger=Backup.Trigger.MANUAL)
        )
        if json:
            self.stdout.write(_as_json(backup))
        else:
            self.stdout.write(f"{backup.id}: {backup.status} ({backup.bytes_stored} bytes stored)")
        if backup.status == Backup.Status.FAILED:
            raise CommandError(f"backup failed: {backup.error}")


def _dsn_name(dsn: str) -> str:
    if dsn.startswith("sqlite:"):
        return "sqlite " + dsn.removeprefix("sqlite:///")
    try:
        p = conninfo_to_dict(dsn)
    except Exception:
        return "dsn " + str(abs(hash(dsn)))
    return f"{p.get('dbname')} on {p.get('host', 'localhost')}:{p.get('port', 5432)}"


def _first_error(exc) -> str:
    messages = getattr(exc, "messages", None)
    return messages[0] if messages else str(exc)


def _as_json(backup: Backup) -> str:
    fields = [
        "id",
        "status",
        "kind",
        "trigger",
        "bytes_read",
        "bytes_stored",
        "sha256",
        "storage_key",
        "client_version",
        "server_version",
        "duration_seconds",
        "error",
    ]
    data = {f: getattr(backup, f) for f in fields}
    data.update(
        target=backup.target.name,
        storage=backup.storage.name,
        created_at=backup.created_at.isoformat(),
        toc_summary=backup.toc_summary,
    )
    return json.dumps(data, indent=2)
