"""Service health checks, their results, and availability over a month."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from alerts.models import Incident, Silence
from dr.checks import CHECK_KINDS
from opsconsole.fields import EncryptedTextField, reveal


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
    retry_interval_seconds = models.PositiveIntegerField(
        default=10,
        help_text="After a failure, check again this soon (not at the next interval), until "
        "it passes or is unhealthy: a first page comes within interval + (retries - 1) * "
        "retry interval.",
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
    certificate_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="HTTPS: when the server's certificate expires.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def fingerprint(self) -> str:
        """The incident that says this check is failing."""
        return f"check:{self.pk}"

    def related(self) -> list[tuple[str, models.Model]]:
        """Its incidents (newest first), its runbook, the check above it and those below."""
        incidents = Incident.objects.filter(
            models.Q(component=self.name)
            | models.Q(fingerprint__startswith=f"{self.fingerprint()}:")
            | models.Q(fingerprint=self.fingerprint())
        ).order_by("-opened_at")[:10]
        found: list[tuple[str, models.Model]] = [("Incident", i) for i in incidents]
        if self.runbook_id:
            found.append(("Runbook", self.runbook))
        if self.parent_id:
            found.append(("Depends on", self.parent))
        found += [("Checked under it", c) for c in self.children.all()[:10]]
        return found

    def clean(self) -> None:
        if not self.kind:
            return
        cls = CHECK_KINDS[self.kind]
        try:
            self.config = cls.validate(self.config or {}, reveal(self.secret))
        except ValueError as exc:
            raise ValidationError({"config": str(exc)}) from None
        if self.enabled and not cls.configured(self.config, reveal(self.secret)):
            raise ValidationError(
                "Configure what to check before enabling it (a URL, host and port, or DSN)."
            )
        if self.timeout_seconds <= 0 or self.timeout_seconds > self.interval_seconds:
            raise ValidationError({"timeout_seconds": "Positive, and no longer than the interval."})
        if not self.retry_interval_seconds:
            raise ValidationError({"retry_interval_seconds": "At least one second."})
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
        if self.state == self.State.DEGRADED:
            # Failing but not yet unhealthy: confirm soon, as Uptime Kuma's retry interval
            # does, rather than a whole interval later.
            self.next_due_at = now + timedelta(seconds=self.retry_interval_seconds)
            return before, self.state
        # Keep to the schedule, not to when the run happened to finish: the next
        # slot after the one just served (skipping slots missed while nothing ran).
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
        """The nearest unhealthy ancestor, as the database says now (a parent checked in
        another thread a moment ago counts)."""
        seen, parent_id = set(), self.parent_id
        while parent_id is not None and parent_id not in seen and len(seen) < 20:
            seen.add(parent_id)
            ancestor = ServiceCheck.objects.filter(pk=parent_id).first()
            if ancestor is None:
                return None
            if ancestor.state == self.State.UNHEALTHY:
                return ancestor
            parent_id = ancestor.parent_id
        return None

    @classmethod
    def overdue(cls, now: datetime | None = None) -> list[ServiceCheck]:
        """Enabled checks well past their due time (30 s beyond their timeout): hanging,
        or the alert path is not running them."""
        now = now or timezone.now()
        late = cls.objects.filter(enabled=True, next_due_at__lt=now - timedelta(seconds=30))
        return [c for c in late if c.next_due_at < now - timedelta(seconds=30 + c.timeout_seconds)]


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
