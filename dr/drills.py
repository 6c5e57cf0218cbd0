"""Recovery drills and objective checks: prove the newest backup restores, and how fast."""

from __future__ import annotations

import logging
import time
from datetime import datetime

from django.utils import timezone

from alerts.incidents import raise_incident, resolve_incident
from backups.errors import BackupError, RestoreRefused
from backups.restore import restore_into
from dr.models import RecoveryDrill, RecoveryObjective
from opsconsole import leases

log = logging.getLogger("opsconsole.dr.drills")


def run_drill(target) -> RecoveryDrill:
    """Restore the newest good backup into a scratch database, check it, time it, drop it."""
    backup = target.newest_good_backup()
    scratch = f"drill_{target.pk}_{timezone.now():%Y%m%d%H%M%S}"[:63]
    drill = RecoveryDrill.objects.create(
        target=target, backup=backup, scratch_database=scratch, lease_expires_at=leases.expiry()
    )
    with leases.held(drill):
        return _drill(drill, target, backup, scratch)


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
            raise RestoreRefused("no good backup to drill with")
        result = restore_into(backup, scratch)
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
