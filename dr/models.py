"""Service health checks and their history."""

from __future__ import annotations

import math
import statistics
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.utils import timezone

from alerts.incidents import raise_incident
from alerts.models import Incident, Silence
from dr.checks import CHECK_KINDS
from dr.failover import ACTION_KINDS as FAILOVER_KINDS
from dr.failover import FailoverError
from opsconsole import permissions
from opsconsole.approvals.models import ApprovalRequest, RunStatus
from opsconsole.fields import EncryptedTextField


class ServiceCheck(models.Model):
    class State(models.TextChoices):
        UNKNOWN = "unknown", "Unknown"
        HEALTHY = "healthy", "Healthy"
        DEGRADED = "degraded", "Degraded"
        UNHEALTHY = "unhealthy", "Unhealthy"

    # How a state is coloured wherever it is shown (admin list, dashboard).
    STATE_CSS = {"healthy": "state-ok", "degraded": "state-warn", "unhealthy": "state-bad"}

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=[(k, c.label) for k, c in CHECK_KINDS.items()])
    config = models.JSONField(
        default=dict,
        blank=True,
        help_text='http: {"url", "expected_status", "keyword", "json_path", "json_value"} · '
        'tcp: {"host", "port"} · postgres: {"max_lag_seconds"} · redis: {}',
    )
    secret = EncryptedTextField(
        blank=True,
        default="",
        help_text="postgres / redis: the connection URL; http: an Authorization header.",
    )
    interval_seconds = models.PositiveIntegerField(default=30)
    timeout_seconds = models.FloatField(default=5.0)
    retries = models.PositiveIntegerField(
        default=3, help_text="Consecutive failures before unhealthy."
    )
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        help_text="When the parent is unhealthy this check opens no incident of its own.",
    )
    runbook_url = models.URLField(blank=True)
    runbook = models.ForeignKey(
        "Runbook", null=True, blank=True, on_delete=models.SET_NULL, related_name="checks"
    )
    enabled = models.BooleanField(default=True)
    public = models.BooleanField(
        default=True, help_text="Listed on the public status page, when that page is on."
    )
    state = models.CharField(
        max_length=10, choices=State.choices, default=State.UNKNOWN, editable=False
    )
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    consecutive_successes = models.PositiveIntegerField(default=0, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_latency_ms = models.FloatField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    next_due_at = models.DateTimeField(default=timezone.now, db_index=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def fingerprint(self) -> str:
        """The incident that says this check is failing."""
        return f"check:{self.pk}"

    def clean(self) -> None:
        if not self.kind:
            return
        cls = CHECK_KINDS[self.kind]
        try:
            self.config = cls.validate(self.config or {}, self.secret or "")
        except ValueError as exc:
            raise ValidationError({"config": str(exc)}) from None
        if self.enabled and not cls.configured(self.config, self.secret or ""):
            raise ValidationError(
                "Configure what to check before enabling it (a URL, host and port, or DSN)."
            )
        if self.timeout_seconds <= 0 or self.timeout_seconds > self.interval_seconds:
            raise ValidationError({"timeout_seconds": "Positive, and no longer than the interval."})
        ancestor, seen = self.parent, {self.pk}
        while ancestor is not None:
            if ancestor.pk in seen:
                raise ValidationError({"parent": "A check cannot be its own ancestor."})
            seen.add(ancestor.pk)
            ancestor = ancestor.parent

    @property
    def runner(self):
        return CHECK_KINDS[self.kind](self)

    def record(self, ok: bool, latency_ms: float, note: str, now: datetime) -> tuple[str, str]:
        """Apply one result to the state machine; returns (before, after)."""
        before = self.state
        if ok:
            self.consecutive_successes += 1
            self.consecutive_failures = 0
            self.state = self.State.HEALTHY
            self.last_error = ""
        else:
            self.consecutive_failures += 1
            self.consecutive_successes = 0
            self.last_error = note[:2000]
            self.state = (
                self.State.UNHEALTHY
                if self.consecutive_failures >= self.retries
                else self.State.DEGRADED
            )
        self.last_checked_at = now
        self.last_latency_ms = round(latency_ms, 1)
        # Keep to the schedule, not to when the run happened to finish: the next
        # slot after the one just served (skipping slots missed while no worker ran).
        interval = timedelta(seconds=self.interval_seconds)
        slots = max(1, math.ceil((now - self.next_due_at) / interval))
        self.next_due_at = self.next_due_at + slots * interval
        return before, self.state

    def maintenance_windows(
        self, start: datetime, end: datetime
    ) -> list[tuple[datetime, datetime]]:
        """Silences overlapping [start, end) that would silence this check's incident."""
        # The incident this check would open, unsaved: the silence decides by its own rules.
        incident = Incident(component=self.name, priority="critical", source="health", details={})
        windows = sorted(
            (max(s.starts_at, start), min(s.ends_at, end))
            for s in Silence.objects.filter(starts_at__lt=end, ends_at__gt=start)
            if s.matches(incident)
        )
        merged: list[tuple[datetime, datetime]] = []
        for window_start, window_end in windows:  # overlapping silences count once
            if merged and window_start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], window_end))
            else:
                merged.append((window_start, window_end))
        return merged

    def availability(self, start: datetime, end: datetime) -> dict:
        """Share of results in [start, end) that passed, maintenance windows left out."""
        windows = self.maintenance_windows(start, end)
        results = self.results.filter(at__gte=start, at__lt=end)
        in_maintenance = models.Q(pk__in=[])
        for window_start, window_end in windows:
            in_maintenance |= models.Q(at__gte=window_start, at__lt=window_end)
        counted = results.exclude(in_maintenance).aggregate(
            total=models.Count("pk"), failed=models.Count("pk", filter=models.Q(ok=False))
        )
        total, failed = counted["total"], counted["failed"]
        return {
            "check": self.name,
            "results": total,
            "failed": failed,
            "excluded": results.filter(in_maintenance).count() if windows else 0,
            "maintenance_minutes": round(sum((e - s).total_seconds() for s, e in windows) / 60),
            "availability": None if total == 0 else round(100 * (total - failed) / total, 3),
            # Each failed result stands for one interval of the service being down.
            "downtime_minutes": round(failed * self.interval_seconds / 60, 1),
        }

    def parent_unhealthy(self) -> ServiceCheck | None:
        ancestor = self.parent
        while ancestor is not None:
            if ancestor.state == self.State.UNHEALTHY:
                return ancestor
            ancestor = ancestor.parent
        return None


def month_bounds(month: str | None = None) -> tuple[datetime, datetime]:
    """'YYYY-MM' (default: this month) → its start and the next month's start, local time."""
    today = timezone.localdate()
    try:
        year, number = (int(p) for p in month.split("-")) if month else (today.year, today.month)
        start = timezone.make_aware(datetime(year, number, 1))
    except ValueError:
        raise ValidationError(f"{month!r} is not a month; use YYYY-MM, e.g. 2026-11") from None
    following = datetime(year + number // 12, number % 12 + 1, 1)
    return start, timezone.make_aware(following)


def availability_report(month: str | None = None) -> tuple[datetime, datetime, list[dict]]:
    start, end = month_bounds(month)
    report = [c.availability(start, end) for c in ServiceCheck.objects.all()]
    return start, end, [row for row in report if row["results"] or row["excluded"]]


class CheckResult(models.Model):
    service_check = models.ForeignKey(
        ServiceCheck, on_delete=models.CASCADE, related_name="results"
    )
    at = models.DateTimeField(db_index=True)
    ok = models.BooleanField()
    latency_ms = models.FloatField()
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["service_check", "at"], name="check_result_series")]

    def __str__(self) -> str:
        return f"{self.service_check} {'ok' if self.ok else 'failed'} at {self.at:%H:%M:%S}"

    @classmethod
    def prune(cls, older_than: timedelta = timedelta(days=90)) -> int:
        return cls.objects.filter(at__lt=timezone.now() - older_than).delete()[0]


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

    def __str__(self) -> str:
        return f"objectives for {self.target}"

    def fingerprint(self) -> str:
        """The incident that says these objectives are not met."""
        return f"objective:{self.pk}"

    def live_rpo(self, now: datetime | None = None) -> timedelta | None:
        newest = self.target.newest_good_backup()
        return None if newest is None else (now or timezone.now()) - newest.created_at

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
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"drill of {self.target} at {self.started_at:%Y-%m-%d %H:%M}"


class Runbook(models.Model):
    scenario = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    owner = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["scenario"]

    def __str__(self) -> str:
        return self.scenario

    def start(self, user, incident=None) -> RunbookExecution:
        if not user.has_perm(permissions.WORK_RUNBOOKS):
            raise PermissionDenied("You may not work runbooks.")
        return RunbookExecution.objects.create(runbook=self, started_by=user, incident=incident)


class RunbookStep(models.Model):
    runbook = models.ForeignKey(Runbook, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()
    text = models.TextField()
    action = models.ForeignKey(
        "FailoverAction",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="steps",
        help_text="Run when the step is done: approved by a second person unless automatic.",
    )

    class Meta:
        ordering = ["runbook", "position"]
        constraints = [
            models.UniqueConstraint(fields=["runbook", "position"], name="runbook_step_position")
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.text[:60]}"


class RunbookExecution(models.Model):
    runbook = models.ForeignKey(Runbook, on_delete=models.PROTECT, related_name="executions")
    incident = models.ForeignKey(
        "alerts.Incident", null=True, blank=True, on_delete=models.SET_NULL
    )
    started_by = models.ForeignKey(
        "auth.User", null=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.runbook} started {self.started_at:%Y-%m-%d %H:%M}"

    def check_off(self, step: RunbookStep, user, notes: str = "") -> StepRecord:
        """Who did which step, when, with what notes; the last step finishes the execution.

        A step with an automated action requests it (it runs at once when the
        action is automatic, after a second person's approval otherwise); doing
        the step again after the run failed or was rejected requests a new run.
        """
        if not user.has_perm(permissions.WORK_RUNBOOKS):
            raise PermissionDenied("You may not work runbooks.")
        if step.runbook_id != self.runbook_id:
            raise ValidationError("That step belongs to another runbook.")
        previous = StepRecord.objects.filter(execution=self, step=step).first()
        run = previous.run if previous else None
        if step.action_id and (run is None or run.status in FailoverRun.RETRYABLE):
            reason = f"runbook {self.runbook}, step {step.position}"
            if self.incident_id:
                reason += f", incident #{self.incident_id}"
            run = step.action.request(user, reason=reason)
        record, _ = StepRecord.objects.update_or_create(
            execution=self,
            step=step,
            defaults={"done_by": user, "done_at": timezone.now(), "notes": notes, "run": run},
        )
        if self.records.count() == self.runbook.steps.count():
            RunbookExecution.objects.filter(pk=self.pk).update(finished_at=timezone.now())
            self.refresh_from_db()
        if self.incident_id:
            ran = f" {step.action}: {run.get_status_display().lower()}." if run else ""
            self.incident.log(
                "note",
                f"runbook {self.runbook}: step {step.position} done.{ran} {notes}".strip(),
                user=user,
            )
        return record


class StepRecord(models.Model):
    execution = models.ForeignKey(
        RunbookExecution, on_delete=models.CASCADE, related_name="records"
    )
    step = models.ForeignKey(RunbookStep, on_delete=models.PROTECT)
    done_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="+")
    done_at = models.DateTimeField()
    notes = models.TextField(blank=True)
    run = models.ForeignKey(
        "FailoverRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["step__position"]
        constraints = [
            models.UniqueConstraint(fields=["execution", "step"], name="one_record_per_step")
        ]

    def __str__(self) -> str:
        return f"step {self.step.position} by {self.done_by}"


class FailoverAction(models.Model):
    """A prepared step for a bad day: run on approval, or at once when marked automatic."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(
        max_length=20, choices=[(k, c.label) for k, c in FAILOVER_KINDS.items()]
    )
    config = models.JSONField(default=dict, blank=True)
    secret = EncryptedTextField(
        blank=True, default="", help_text="A token or connection URL the action needs."
    )
    automatic = models.BooleanField(
        default=False, help_text="Runs without approval when requested."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def fingerprint(self) -> str:
        """The incident raised when a run of this action fails."""
        return f"failover:{self.pk}"

    def clean(self) -> None:
        if self.kind:
            try:
                self.config = FAILOVER_KINDS[self.kind].validate(
                    self.config or {}, self.secret or ""
                )
            except ValueError as exc:
                raise ValidationError({"config": str(exc)}) from None

    def request(self, user, reason: str = "") -> FailoverRun:
        """File a run; an automatic action is approved by its own setting and queued."""
        FailoverRun.check_can_request(user)
        run = FailoverRun.objects.create(action=self, requested_by=user, reason=reason)
        if self.automatic:
            run.approve_automatically("automatic action")
        return run


class FailoverRun(ApprovalRequest):
    REQUEST_PERMISSION = permissions.REQUEST_FAILOVER
    APPROVE_PERMISSION = permissions.APPROVE_FAILOVER
    FAILURES = (FailoverError,)

    Status = RunStatus
    RETRYABLE = (RunStatus.FAILED, RunStatus.REJECTED, RunStatus.CANCELLED)
    # How a status is coloured wherever it is shown; the rest are under way.
    STATUS_CSS = {"succeeded": "state-ok", "failed": "state-bad", "rejected": "state-bad"}

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REQUESTED)
    action = models.ForeignKey(FailoverAction, on_delete=models.PROTECT, related_name="runs")
    result = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"{self.action} ({self.get_status_display().lower()})"

    def confirmation_phrase(self) -> str:
        return self.action.name

    def run(self) -> dict:
        return {"result": FAILOVER_KINDS[self.action.kind](self.action).run()}

    def on_failed(self, message: str) -> None:
        raise_incident(
            source="dr",
            fingerprint=self.action.fingerprint(),
            title=f"Failover action {self.action} failed",
            priority="critical",
            component="dr",
            details={"error": message[:500]},
        )
