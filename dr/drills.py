"""Recovery drills and objective checks: prove the newest backup restores, and how fast."""

from __future__ import annotations

import time
from datetime import datetime

from django.utils import timezone

from alerts.incidents import raise_incident, resolve_incident
from backups.errors import BackupError, RestoreRefused
from backups.restore import restore_into
from dr.models import RecoveryDrill, RecoveryObjective


def run_drill(target) -> RecoveryDrill:
    """Restore the newest good backup into a scratch database, check it, time it, drop it."""
    backup = target.newest_good_backup()
    drill = RecoveryDrill.objects.create(target=target, backup=backup)
    scratch = f"drill_{target.pk}_{timezone.now():%Y%m%d%H%M%S}"[:63]
    started = time.monotonic()
    try:
        if backup is None:
            raise RestoreRefused("no good backup to drill with")
        result = restore_into(backup, scratch)
    except (RestoreRefused, BackupError) as exc:
        RecoveryDrill.objects.filter(pk=drill.pk).update(
            status=RecoveryDrill.Status.FAILED,
            finished_at=timezone.now(),
            duration_seconds=round(time.monotonic() - started, 3),
            error=getattr(exc, "message", str(exc))[:4000],
        )
        raise_incident(
            source="dr",
            fingerprint=target.fingerprint("drill"),
            title=f"Recovery drill of {target} failed",
            priority="high",
            component="dr",
            details={"target": target.name, "error": str(exc)[:500]},
        )
        drill.refresh_from_db()
        return drill
    finally:
        if backup is not None:
            target.db.drop_database(scratch)
    duration = time.monotonic() - started
    objective = RecoveryObjective.objects.filter(target=target).first()
    rto_met = None if objective is None else duration <= objective.rto_target_minutes * 60
    RecoveryDrill.objects.filter(pk=drill.pk).update(
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
