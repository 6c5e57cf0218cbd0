"""Restoring a backup: into a new database on the target's server, checked before it counts.

`restore_into` is what restores, drills and the `restore` command share.
`carry_out_restore` is the work of an approved RestoreRequest: into a new
database, or — after a safety backup of the live one — in its place, swapped
only once every check passed, the old database kept under another name.
"""

from __future__ import annotations

import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from backups.backup import run_backup
from backups.errors import BackupError, RestoreRefused
from backups.models import Backup, RestoreRequest
from backups.streams import scratch_dir
from backups.verify import extract
from opsconsole import leases, tracing


def restore_into(backup: Backup, dbname: str, until=None) -> dict:
    """Restore into a new database on the target's server; checks run before it counts.

    Refused before anything is created when a check of the backup fails; on a
    failure after that, the new database is dropped. A base backup is recovered with
    the target's WAL up to `until` (None: as late as was shipped).
    """
    if backup.kind == Backup.Kind.BASE:
        from backups.pitr import recover_into

        return recover_into(backup, dbname, until)
    engine = backup.target.db
    if not engine.restores_into_databases:
        raise RestoreRefused(f"the console cannot restore {engine.label} targets into a database")
    if engine.database_exists(dbname):
        raise RestoreRefused(f"database {dbname!r} exists already; choose a new name")
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="opsconsole-restore-", dir=scratch_dir()) as tmp:
        archive = Path(tmp) / "archive"
        timings.update(extract(backup, archive))
        with tracing.span("restore.read_archive"):
            engine.describe_archive(archive)  # a readable archive, before anything is created
        engine.create_database(dbname)
        try:
            started = time.monotonic()
            with tracing.span("restore.restore", {"opsconsole.engine": backup.target.engine}):
                engine.restore_archive(archive, dbname)
            timings["restore"] = time.monotonic() - started
            started = time.monotonic()
            with tracing.span("restore.checks") as current:
                problems = engine.run_checks(
                    dbname, backup.target.required_tables, backup.target.check_queries
                )
                current.set_attribute("opsconsole.problems", len(problems))
            timings["verify"] = time.monotonic() - started
            if problems:
                raise BackupError("the restored database failed its checks: " + "; ".join(problems))
        except BaseException:
            engine.drop_database(dbname)
            raise
    return {"database": dbname, "timings": {k: round(v, 3) for k, v in timings.items()}}


def carry_out_restore(request) -> dict:
    """The work of a claimed RestoreRequest; a replace swaps databases only after every
    check passed. Returns the fields to record with success."""
    with tracing.span(
        f"restore {request.backup.target.name}",
        {
            "opsconsole.restore_request": request.pk,
            "opsconsole.backup": request.backup_id,
            "opsconsole.mode": request.mode,
        },
    ):
        return _carry_out(request)


def _carry_out(request) -> dict:
    backup = request.backup
    engine = backup.target.db
    started = time.monotonic()
    if request.mode == RestoreRequest.Mode.KEEP:
        from backups.pitr import recover_and_keep

        kept = recover_and_keep(backup, request.recovery_target(), request.pk)
        total = round(time.monotonic() - started, 3)
        return {
            "timings": {**kept["timings"], "total": total},
            "scratch_dsn": kept["dsn"],
            "scratch_folder": kept["folder"],
            "scratch_host": socket.gethostname(),
            "scratch_until": timezone.now() + timedelta(hours=settings.PITR_KEEP_HOURS),
        }
    if request.mode == RestoreRequest.Mode.NEW:
        result = restore_into(backup, request.new_database, request.recovery_target())
    else:
        safety = run_backup(
            Backup.objects.create(
                target=backup.target,
                storage=backup.storage,
                trigger=Backup.Trigger.PRE_RESTORE,
                requested_by=request.decided_by,
            )
        )
        RestoreRequest.objects.filter(pk=request.pk).update(safety_backup=safety)
        if safety.status == Backup.Status.FAILED:
            raise BackupError(f"the safety backup of the current database failed: {safety.error}")
        stamp = timezone.now().strftime("%Y%m%d%H%M%S")
        fresh = f"{engine.dbname}_incoming_{stamp}"[:63]
        result = restore_into(backup, fresh, request.recovery_target())
        old = f"{engine.dbname}_pre_restore_{stamp}"[:63]
        leases.check()  # never swap for a run the reconciler has already failed
        with tracing.span("restore.swap"):
            engine.swap_in(fresh, old)
        RestoreRequest.objects.filter(pk=request.pk).update(old_database=old)
    return {"timings": {**result["timings"], "total": round(time.monotonic() - started, 3)}}
