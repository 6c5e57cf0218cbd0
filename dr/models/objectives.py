"""Recovery objectives (RPO and RTO targets, measured live) and the drills that prove them."""

from __future__ import annotations

import re
import statistics
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from backups.models import Backup, WalArchive, timings_in_words

# A column to check point-in-time drills by: table.column or schema.table.column.
COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){1,2}")


# Phases of a restore, in the order they happen, as people call them.
class RecoveryObjective(models.Model):
    """How much data may be lost (RPO) and how long recovery may take (RTO), per database target."""

    target = models.OneToOneField(
        "backups.DatabaseTarget", on_delete=models.CASCADE, related_name="objective"
    )
    rpo_target_minutes = models.PositiveIntegerField(default=60)
    rto_target_minutes = models.PositiveIntegerField(default=240)
    drill_every_days = models.PositiveIntegerField(
        default=31, help_text="A drill older than this is a breach."
    )
    pitr_drill_column = models.CharField(
        "point-in-time drill column",
        max_length=200,
        blank=True,
        help_text="With continuous WAL: <code>table.column</code> (or "
        "<code>schema.table.column</code>) holding when each row was written, such as "
        "<code>orders.created_at</code>. Drills then restore to a moment some minutes ago "
        "and check that the rows written just before it are there and none written after "
        "it. Empty: drills restore the newest backup.",
    )
    pitr_drill_minutes = models.PositiveIntegerField("point-in-time drill: minutes ago", default=10)

    def __str__(self) -> str:
        return f"objectives for {self.target}"

    def fingerprint(self) -> str:
        """The incident that says these objectives are not met."""
        return f"objective:{self.pk}"

    def clean(self) -> None:
        if self.pitr_drill_column and not COLUMN.fullmatch(self.pitr_drill_column):
            raise ValidationError(
                {"pitr_drill_column": "Write table.column or schema.table.column (letters, "
                 "digits and underscores), such as orders.created_at."}
            )  # fmt: skip
        if not 1 <= self.pitr_drill_minutes <= 1440:
            raise ValidationError({"pitr_drill_minutes": "From 1 to 1440 minutes."})

    def drill_moment(self, now: datetime | None = None) -> datetime | None:
        """The moment a drill recovers to: None (the newest backup) unless point-in-time
        drills are set up and the target's WAL streams."""
        if not self.pitr_drill_column:
            return None
        if not WalArchive.objects.filter(target=self.target, enabled=True).exists():
            return None
        return (now or timezone.now()) - timedelta(minutes=self.pitr_drill_minutes)

    def rto_phases(self) -> str:
        """How the last successful drill's time was spent, in words with units."""
        drill = (
            self.target.drills.filter(status=RecoveryDrill.Status.SUCCEEDED)
            .exclude(timings={})
            .order_by("-started_at")
            .first()
        )
        return drill.phases() if drill else ""

    def live_rpo(self, now: datetime | None = None) -> timedelta | None:
        """Writes that would be lost now: since the newest good backup, or, with continuous
        WAL and a base backup to replay it onto, since the last shipped WAL."""
        now = now or timezone.now()
        newest = self.target.newest_good_backup()
        rpo = None if newest is None else now - newest.created_at
        wal = WalArchive.objects.filter(target=self.target, enabled=True).first()
        age = wal.recovery_point_age(now) if wal else None
        if (
            age is not None
            and self.target.backups.filter(kind=Backup.Kind.BASE, status__in=Backup.GOOD).exists()
        ):
            rpo = timedelta(seconds=age) if rpo is None else min(rpo, timedelta(seconds=age))
        return rpo

    def measured_rto(self, last: int = 5) -> timedelta | None:
        """The median duration of the last successful drills."""
        durations = list(
            self.target.drills.filter(status=RecoveryDrill.Status.SUCCEEDED)
            .order_by("-started_at")
            .values_list("duration_seconds", flat=True)[:last]
        )
        return timedelta(seconds=statistics.median(durations)) if durations else None

    def summary(self, now: datetime | None = None) -> dict:
        """What the dashboard and the admin show: live RPO, measured RTO, last drill, in colour."""
        now = now or timezone.now()
        rpo, rto = self.live_rpo(now), self.measured_rto()
        drill = (
            self.target.drills.filter(status=RecoveryDrill.Status.SUCCEEDED)
            .order_by("-started_at")
            .first()
        )
        drill_ok = drill is not None and now - drill.started_at <= timedelta(
            days=self.drill_every_days
        )
        rpo_ok = rpo is not None and rpo <= timedelta(minutes=self.rpo_target_minutes)
        rto_css = (
            "state-warn"
            if rto is None
            else ("state-ok" if rto <= timedelta(minutes=self.rto_target_minutes) else "state-bad")
        )
        return {
            "target": self.target.name,
            "rpo": "none" if rpo is None else f"{rpo.total_seconds() / 60:.0f}",
            "rpo_target": self.rpo_target_minutes,
            "rpo_css": "state-ok" if rpo_ok else "state-bad",
            "rto": "no drill" if rto is None else f"{rto.total_seconds() / 60:.1f}",
            "rto_target": self.rto_target_minutes,
            "rto_css": rto_css,
            "rto_phases": self.rto_phases(),
            "last_drill": "never" if drill is None else f"{(now - drill.started_at).days} d ago",
            "drill_css": "state-ok" if drill_ok else "state-bad",
        }

    def breaches(self, now: datetime | None = None) -> list[str]:
        now = now or timezone.now()
        problems = []
        rpo = self.live_rpo(now)
        if rpo is None:
            problems.append("no good backup at all")
        elif rpo > timedelta(minutes=self.rpo_target_minutes):
            problems.append(
                f"RPO {rpo.total_seconds() / 60:.0f} min exceeds {self.rpo_target_minutes} min"
            )
        rto = self.measured_rto()
        if rto is not None and rto > timedelta(minutes=self.rto_target_minutes):
            minutes = rto.total_seconds() / 60
            problems.append(f"measured RTO {minutes:.0f} min exceeds {self.rto_target_minutes} min")
        last = (
            self.target.drills.filter(status=RecoveryDrill.Status.SUCCEEDED)
            .order_by("-started_at")
            .first()
        )
        if last is None or now - last.started_at > timedelta(days=self.drill_every_days):
            problems.append(f"no successful drill in the last {self.drill_every_days} days")
        return problems


class RecoveryDrill(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    target = models.ForeignKey(
        "backups.DatabaseTarget", on_delete=models.CASCADE, related_name="drills"
    )
    backup = models.ForeignKey("backups.Backup", null=True, blank=True, on_delete=models.SET_NULL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True)
    rto_met = models.BooleanField(null=True)
    scratch_database = models.CharField(max_length=63, blank=True)
    recovered_to = models.DateTimeField(
        null=True, blank=True, help_text="The moment a point-in-time drill recovered to."
    )
    findings = models.TextField(blank=True, help_text="What the drill checked, in words.")
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Renewed by the worker running it."
    )
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"drill of {self.target} at {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def in_progress(self) -> bool:
        return self.status == self.Status.RUNNING

    def phases(self) -> str:
        """`fetch 3.1 s · replay 12.0 s · copy 4.2 s · checks 0.1 s`"""
        return timings_in_words(self.timings)
