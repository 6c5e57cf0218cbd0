"""Recovery drills and objective checks: prove the newest backup restores, and how fast."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import psycopg
from django.utils import timezone
from psycopg import sql

from alerts.incidents import raise_incident, resolve_incident
from backups.errors import BackupError, RestoreRefused
from backups.restore import restore_into
from dr.models import RecoveryDrill, RecoveryObjective
from opsconsole import leases

log = logging.getLogger("opsconsole.dr.drills")


# A point-in-time drill compares the rows written in this window before its moment...
WINDOW = timedelta(minutes=5)
# ...up to this long before it: a row stamped when its transaction began may commit a
# little later, past the moment.
MARGIN = timedelta(seconds=5)


def run_drill(target) -> RecoveryDrill:
    """Restore into a scratch database, check it, time it, drop it: the newest good backup,
    or, with point-in-time drills set up, the database as it was some minutes ago."""
    objective = RecoveryObjective.objects.filter(target=target).first()
    moment = objective.drill_moment() if objective else None
    backup = target.base_backup_before(moment) if moment else target.newest_good_backup()
    scratch = f"drill_{target.pk}_{timezone.now():%Y%m%d%H%M%S}"[:63]
    drill = RecoveryDrill.objects.create(
        target=target, backup=backup, scratch_database=scratch, recovered_to=moment,
        lease_expires_at=leases.expiry(),
    )  # fmt: skip
    with leases.held(drill):
        return _drill(drill, target, backup, scratch)


def check_moment(target, scratch: str, column: str, moment: datetime) -> str:
    """Rows stamped just before `moment` (by `column`) are all in the recovered database,
    and none stamped after it; the live database says which rows those are."""
    *table, name = column.split(".")
    table_sql = sql.SQL(".").join(sql.Identifier(part) for part in table)
    stamp = sql.Identifier(name)
    before = sql.SQL("SELECT count(*) FROM {} WHERE {} > %s AND {} <= %s").format(
        table_sql, stamp, stamp
    )
    after = sql.SQL("SELECT count(*) FROM {} WHERE {} > %s").format(table_sql, stamp)
    window = [moment - WINDOW, moment - MARGIN]
    try:
        with target.db.connect() as live, target.db.connect(scratch) as recovered:
            for conn in (live, recovered):
                # A `timestamp` column (no time zone) is read as UTC, on both sides alike.
                conn.execute("SET TimeZone = 'UTC'")
            written_before = live.execute(before, window).fetchone()[0]
            written_after = live.execute(after, [moment]).fetchone()[0]
            kept_before = recovered.execute(before, window).fetchone()[0]
            leaked_after = recovered.execute(after, [moment]).fetchone()[0]
    except psycopg.Error as exc:
        message = (exc.diag.message_primary if exc.diag else None) or type(exc).__name__
        raise BackupError(f"the drill's column {column} cannot be compared: {message}") from None
    at = f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    problems = []
    if kept_before < written_before:
        problems.append(
            f"{written_before - kept_before} of the {written_before} rows written in the "
            f"{WINDOW.seconds // 60} minutes before {at} are missing"
        )
    if leaked_after:
        problems.append(f"{leaked_after} rows written after {at} are present")
    if problems:
        raise BackupError(f"the recovery is not the database as of {at}: " + "; ".join(problems))
    if not written_before:
        return (
            f"recovered to {at}, none of the {written_after} rows written since are there; "
            f"inconclusive for the rows before: none was written in the "
            f"{WINDOW.seconds // 60} minutes before it"
        )
    return (
        f"recovered to {at}: the {kept_before} rows written in the {WINDOW.seconds // 60} "
        f"minutes before are there, none of the {written_after} written since"
    )


def _fail(drill: RecoveryDrill, target, message: str, duration: float | None) -> bool:
    failed = RecoveryDrill.objects.filter(pk=drill.pk, status=RecoveryDrill.Status.RUNNING).update(
        status=RecoveryDrill.Status.FAILED,
        finished_at=timezone.now(),
        duration_seconds=None if duration is None else round(duration, 3),
        error=message[:4000],
    )
    if failed:
        raise_incident(
            source="dr",
            fingerprint=target.fingerprint("drill"),
            title=f"Recovery drill of {target} failed",
            priority="high",
            component="dr",
            details={"target": target.name, "error": message[:500]},
        )
    return bool(failed)


def lease_expired(drill: RecoveryDrill) -> bool:
    """The reconciler's verdict on a drill whose worker died: failed, its scratch database
    dropped."""
    failed = _fail(
        drill,
        drill.target,
        "the worker running this drill stopped (its lease ran out): check the jobs worker's "
        "log for a crash or an out-of-memory kill, then run the drill again",
        None,
    )
    if failed and drill.backup_id and drill.scratch_database:
        try:
            drill.target.db.drop_database(drill.scratch_database)
        except Exception:
            log.exception("could not drop the scratch database %s", drill.scratch_database)
    return failed


def _drill(drill: RecoveryDrill, target, backup, scratch: str) -> RecoveryDrill:
    started = time.monotonic()
    try:
        if backup is None:
            raise RestoreRefused(
                "no base backup finished before the moment to recover to"
                if drill.recovered_to
                else "no good backup to drill with"
            )
        result = restore_into(backup, scratch, drill.recovered_to)
        findings = ""
        if drill.recovered_to:
            column = RecoveryObjective.objects.get(target=target).pitr_drill_column
            findings = check_moment(target, scratch, column, drill.recovered_to)
    except (RestoreRefused, BackupError) as exc:
        _fail(drill, target, getattr(exc, "message", str(exc)), time.monotonic() - started)
        drill.refresh_from_db()
        return drill
    finally:
        if backup is not None:
            target.db.drop_database(scratch)
    duration = time.monotonic() - started
    objective = RecoveryObjective.objects.filter(target=target).first()
    rto_met = None if objective is None else duration <= objective.rto_target_minutes * 60
    RecoveryDrill.objects.filter(pk=drill.pk, status=RecoveryDrill.Status.RUNNING).update(
        status=RecoveryDrill.Status.SUCCEEDED,
        finished_at=timezone.now(),
        duration_seconds=round(duration, 3),
        timings=result["timings"],
        findings=findings,
        rto_met=rto_met,
        scratch_database=scratch,
    )
    resolve_incident(target.fingerprint("drill"), reason="the latest drill succeeded")
    drill.refresh_from_db()
    return drill


def check_objectives(now: datetime | None = None) -> int:
    """Hourly: breaches (RPO, measured RTO, no recent drill) go through the door as warnings."""
    now = now or timezone.now()
    breached = 0
    for objective in RecoveryObjective.objects.select_related("target"):
        problems = objective.breaches(now)
        fingerprint = objective.fingerprint()
        if problems:
            breached += 1
            raise_incident(
                source="dr",
                fingerprint=fingerprint,
                title=f"Recovery objectives of {objective.target} not met",
                priority="medium",
                component="dr",
                details={"problems": problems},
                now=now,
            )
        else:
            resolve_incident(fingerprint, reason="objectives met", now=now)
    return breached


def drill_all() -> int:
    count = 0
    for objective in RecoveryObjective.objects.select_related("target"):
        if objective.target.db.restores_into_databases:
            run_drill(objective.target)
            count += 1
    return count
