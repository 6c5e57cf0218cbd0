"""Metrics, alert rules, incidents, channels, notifications, escalation and silences."""

from __future__ import annotations

import math
import re
import string
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from alerts.channels import CHANNEL_KINDS, channel_class
from alerts.sources import SOURCE_KINDS, source_class
from opsconsole import permissions, tracing
from opsconsole.fields import EncryptedTextField, reveal
from opsconsole.timeline import TimelineEntry


class Priority(models.TextChoices):
    CRITICAL = "critical", "Critical"
    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"


PRIORITY_RANK = {Priority.CRITICAL: 0, Priority.HIGH: 1, Priority.MEDIUM: 2, Priority.LOW: 3}
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def canonical_labels(labels: dict[str, Any]) -> str:
    """One string per label set, so samples and rule states group by it."""
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def humanize_seconds(seconds: int) -> str:
    if seconds <= 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


# --- metrics ------------------------------------------------------------------


class MetricSample(models.Model):
    key = models.CharField(max_length=200)
    labels = models.JSONField(default=dict, blank=True)
    labels_key = models.CharField(max_length=500, default="", blank=True, editable=False)
    value = models.FloatField()
    observed_at = models.DateTimeField()

    class Meta:
        indexes = [
            # "latest / window aggregate of key + labels"
            models.Index(fields=["key", "labels_key", "observed_at"], name="sample_series_time"),
            models.Index(fields=["observed_at"], name="sample_time"),
        ]

    def __str__(self) -> str:
        return f"{self.key}{{{self.labels_key}}} = {self.value} at {self.observed_at:%H:%M:%S}"

    def save(self, *args, **kwargs):
        self.labels_key = canonical_labels(self.labels)
        super().save(*args, **kwargs)

    @classmethod
    def prune(cls, now: datetime | None = None) -> int:
        cutoff = (now or timezone.now()) - timedelta(days=settings.ALERTS_SAMPLE_RETENTION_DAYS)
        return cls.objects.filter(observed_at__lt=cutoff).delete()[0]


class MetricSource(models.Model):
    """A scheduled pull of a metric: Prometheus query, HTTP JSON path, or SQL."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=[(k, c.label) for k, c in SOURCE_KINDS.items()])
    metric_key = models.CharField(
        max_length=200, help_text="Key the pulled values are stored under."
    )
    labels = models.JSONField(default=dict, blank=True, help_text="Labels added to every sample.")
    config = models.JSONField(default=dict, blank=True)
    secret = EncryptedTextField(
        blank=True, default="", help_text="Bearer token (HTTP, Prometheus) or database URL (SQL)."
    )
    interval_seconds = models.PositiveIntegerField(default=60)
    enabled = models.BooleanField(default=True)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not self.kind:
            return
        try:
            self.config = source_class(self.kind).validate(self.config or {}, reveal(self.secret))
        except ValueError as exc:
            raise ValidationError({"config": str(exc)}) from None
        if self.interval_seconds < 5:
            raise ValidationError(
                {"interval_seconds": "Use 5 seconds or more: each pull is a request to the source."}
            )

    def is_due(self, now: datetime) -> bool:
        return self.last_run_at is None or now - self.last_run_at >= timedelta(
            seconds=self.interval_seconds
        )

    def collect(self, now: datetime | None = None) -> int:
        """Pull once; store the samples, or record the error (the rules then see no data)."""
        now = now or timezone.now()
        try:
            readings = source_class(self.kind)(self).pull()
        except Exception as exc:  # any failure of the peer is the source's state, not a crash
            MetricSource.objects.filter(pk=self.pk).update(
                last_run_at=now, last_error=str(exc)[:2000] or type(exc).__name__
            )
            return 0
        samples = [
            MetricSample(
                key=self.metric_key,
                labels=(labels := {**self.labels, **extra}),
                labels_key=canonical_labels(labels),
                value=value,
                observed_at=now,
            )
            for value, extra in readings
            if math.isfinite(value)
        ]
        MetricSample.objects.bulk_create(samples)
        MetricSource.objects.filter(pk=self.pk).update(
            last_run_at=now, last_success_at=now, last_error=""
        )
        return len(samples)


# --- rules ----------------------------------------------------------------------


class AlertRule(models.Model):
    class Category(models.TextChoices):
        SYSTEM = "system", "System"
        API = "api", "API"
        BUSINESS = "business", "Business"
        CUSTOM = "custom", "Custom"

    class Aggregation(models.TextChoices):
        LAST = "last", "last value"
        AVG = "avg", "average"
        MIN = "min", "minimum"
        MAX = "max", "maximum"
        P95 = "p95", "95th percentile"
        SUM = "sum", "sum"
        COUNT = "count", "count of samples"

    class Comparator(models.TextChoices):
        ABOVE = "above", "above"
        BELOW = "below", "below"

    class NoData(models.TextChoices):
        OK = "ok", "treat as OK"
        ALERTING = "alerting", "treat as alerting"
        KEEP = "keep", "keep the last state"

    PLACEHOLDERS = ("value", "threshold", "duration", "labels", "name")
    # Without a window "last" looks this far back for its latest sample.
    DEFAULT_LOOKBACK_SECONDS = 300

    name = models.CharField(max_length=100, unique=True)
    category = models.CharField(max_length=20, choices=Category.choices, default=Category.CUSTOM)
    component = models.CharField(
        max_length=100, blank=True, help_text="What the alert is about (used by silences)."
    )
    metric_key = models.CharField(max_length=200)
    label_matchers = models.JSONField(
        default=dict, blank=True, help_text='Exact label matches, e.g. {"service": "api"}.'
    )
    aggregation = models.CharField(
        max_length=10, choices=Aggregation.choices, default=Aggregation.LAST
    )
    window_seconds = models.IntegerField(
        default=0, help_text="Aggregation window; 0 means the latest sample only."
    )
    comparator = models.CharField(
        max_length=10, choices=Comparator.choices, default=Comparator.ABOVE
    )
    threshold = models.FloatField()
    for_seconds = models.IntegerField(
        default=0, help_text="How long the condition must hold before the alert fires."
    )
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.MEDIUM)
    message_template = models.CharField(
        max_length=500,
        default="{name}: {value} (threshold {threshold})",
        help_text="Placeholders: {value}, {threshold}, {duration}, {labels}, {name}.",
    )
    no_data = models.CharField(max_length=10, choices=NoData.choices, default=NoData.KEEP)
    keep_firing_seconds = models.IntegerField(
        default=0, help_text="Stay firing this long after the condition clears (flap guard)."
    )
    enabled = models.BooleanField(default=True)
    runbook_url = models.URLField(blank=True)
    description = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["category", "name"]

    def __str__(self) -> str:
        return self.name

    # -- validation ----------------------------------------------------------------
    def clean(self) -> None:
        errors: dict[str, str] = {}
        for field in ("window_seconds", "for_seconds", "keep_firing_seconds"):
            value = getattr(self, field)
            if value is not None and value < 0:
                errors[field] = "A duration cannot be negative."
        if (
            self.aggregation
            and self.aggregation != self.Aggregation.LAST
            and not self.window_seconds
        ):
            errors["window_seconds"] = (
                f"The {self.get_aggregation_display()} needs a window: "
                "set one, or use the last value."
            )
        if isinstance(self.threshold, float) and not math.isfinite(self.threshold):
            errors["threshold"] = "The threshold must be a finite number."
        if not isinstance(self.label_matchers, dict) or not all(
            isinstance(k, str) and LABEL_NAME.match(k) and isinstance(v, str | int | float)
            for k, v in (self.label_matchers or {}).items()
        ):
            errors["label_matchers"] = (
                'Label matchers are an object of label names to values, e.g. {"service": "api"}.'
            )
        try:
            self._check_template()
        except ValueError as exc:
            errors["message_template"] = str(exc)
        if errors:
            raise ValidationError(errors)

    def _check_template(self) -> None:
        try:
            fields = [
                f for _, f, _, _ in string.Formatter().parse(self.message_template) if f is not None
            ]
        except ValueError as exc:
            raise ValueError(f"The message template is malformed: {exc}.") from None
        unknown = sorted({f for f in fields if f not in self.PLACEHOLDERS})
        if "" in fields:
            raise ValueError("Name every placeholder: {} alone is not allowed.")
        if unknown:
            allowed = ", ".join("{" + p + "}" for p in self.PLACEHOLDERS)
            names = ", ".join("{" + u + "}" for u in unknown)
            raise ValueError(f"Unknown placeholder {names}; use {allowed}.")

    # -- evaluation helpers -----------------------------------------------------------
    @property
    def lookback_seconds(self) -> int:
        return self.window_seconds or self.DEFAULT_LOOKBACK_SECONDS

    def breaches(self, value: float | None) -> bool:
        if value is None:
            return False
        if self.comparator == self.Comparator.ABOVE:
            return value > self.threshold
        return value < self.threshold

    def render_message(self, value: float | None, labels: dict[str, Any]) -> str:
        shown = "no data" if value is None else f"{value:g}"
        try:
            return self.message_template.format(
                value=shown,
                threshold=f"{self.threshold:g}",
                duration=humanize_seconds(self.for_seconds),
                labels=canonical_labels(labels) or "-",
                name=self.name,
            )
        except (ValueError, KeyError, IndexError):
            return f"{self.name}: {shown} (threshold {self.threshold:g})"

    def fingerprint(self, labels_key: str) -> str:
        return f"rule:{self.pk}:{labels_key}"


class RuleState(models.Model):
    """Where one rule stands for one label set: kept in the database so a restarted
    worker continues where the last one stopped."""

    class State(models.TextChoices):
        INACTIVE = "inactive", "Inactive"
        PENDING = "pending", "Pending"
        FIRING = "firing", "Firing"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    labels_key = models.CharField(max_length=500, default="", blank=True)
    labels = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.INACTIVE)
    active_since = models.DateTimeField(null=True, blank=True)
    firing_since = models.DateTimeField(null=True, blank=True)
    last_true_at = models.DateTimeField(null=True, blank=True)
    last_value = models.FloatField(null=True, blank=True)
    last_evaluated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "labels_key"], name="rule_state_per_labels")
        ]

    def __str__(self) -> str:
        return f"{self.rule} {{{self.labels_key}}}: {self.state}"


# --- incidents ------------------------------------------------------------------


class PriorityPolicy(models.Model):
    """Per-priority notification cooldown: the same fingerprint is not re-notified sooner."""

    priority = models.CharField(max_length=10, choices=Priority.choices, unique=True)
    cooldown_minutes = models.PositiveIntegerField()

    class Meta:
        verbose_name_plural = "priority policies"
        ordering = ["priority"]

    def __str__(self) -> str:
        return f"{self.get_priority_display()}: {self.cooldown_minutes} min cooldown"

    DEFAULT_COOLDOWN = {"critical": 5, "high": 15, "medium": 30, "low": 60}

    @classmethod
    def cooldown(cls, priority: str) -> timedelta:
        row = cls.objects.filter(priority=priority).first()
        minutes = row.cooldown_minutes if row else cls.DEFAULT_COOLDOWN.get(priority, 30)
        return timedelta(minutes=minutes)


class Channel(models.Model):
    """Where notifications go. Secrets are encrypted; bad config is refused on save."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=[(k, c.label) for k, c in CHANNEL_KINDS.items()])
    config = models.JSONField(default=dict, blank=True)
    secret = EncryptedTextField(blank=True, default="")
    priorities = models.JSONField(default=list, blank=True, help_text="Priorities it receives.")
    enabled = models.BooleanField(default=True)
    flagged_at = models.DateTimeField(null=True, blank=True, editable=False)
    flagged_reason = models.TextField(blank=True, editable=False)
    last_status = models.CharField(max_length=20, blank=True, editable=False)
    last_delivery_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Set when a delivery timed out: further sends wait instead of tying up workers.
    unresponsive_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def fingerprint(self) -> str:
        """The incident that says this channel cannot deliver."""
        return f"channel:{self.pk}"

    @property
    def transport(self):
        return channel_class(self.kind)(self)

    def clean(self) -> None:
        if not self.kind:
            return
        cls = channel_class(self.kind)
        if not self.priorities:
            self.priorities = list(cls.default_priorities)
        bad = [p for p in self.priorities if p not in Priority.values]
        if bad:
            raise ValidationError(
                {"priorities": f"Unknown priority {bad[0]!r}; use {', '.join(Priority.values)}."}
            )
        try:
            self.config = cls.validate(self.config or {}, reveal(self.secret))
        except ValueError as exc:
            raise ValidationError({"config": str(exc)}) from None

    def receives(self, priority: str) -> bool:
        return self.enabled and self.flagged_at is None and priority in (self.priorities or [])

    def flag(self, reason: str) -> None:
        """A permanent failure: stop using the channel until someone fixes it."""
        Channel.objects.filter(pk=self.pk).update(
            flagged_at=timezone.now(), flagged_reason=reason[:2000]
        )
        self.flagged_at, self.flagged_reason = timezone.now(), reason

    def unflag(self) -> None:
        Channel.objects.filter(pk=self.pk).update(
            flagged_at=None, flagged_reason="", unresponsive_until=None
        )
        self.flagged_at, self.flagged_reason, self.unresponsive_until = None, "", None


class EscalationPolicy(models.Model):
    name = models.CharField(max_length=100, unique=True)
    is_default = models.BooleanField(default=False)

    class Meta:
        verbose_name_plural = "escalation policies"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="one_default_escalation_policy",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def default(cls) -> EscalationPolicy | None:
        return cls.objects.filter(is_default=True).first()


class EscalationLevel(models.Model):
    policy = models.ForeignKey(EscalationPolicy, on_delete=models.CASCADE, related_name="levels")
    position = models.PositiveIntegerField(help_text="0 is told at once; higher levels later.")
    delay_minutes = models.PositiveIntegerField(
        default=0, help_text="Minutes after the incident opened, if still unacknowledged."
    )
    channels = models.ManyToManyField(Channel, blank=True, related_name="escalation_levels")
    description = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["policy", "position"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "position"], name="escalation_level_position")
        ]

    def __str__(self) -> str:
        return f"{self.policy}: level {self.position} after {self.delay_minutes} min"


class Silence(models.Model):
    """A maintenance window: matching incidents are recorded, shown as silenced, not notified."""

    component = models.CharField(max_length=100, blank=True)
    rule = models.ForeignKey(AlertRule, null=True, blank=True, on_delete=models.CASCADE)
    priority = models.CharField(max_length=10, choices=Priority.choices, blank=True)
    labels = models.JSONField(default=dict, blank=True, help_text="Labels the incident must carry.")
    starts_at = models.DateTimeField(default=timezone.now)
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=300)
    freeze_deploys = models.BooleanField(
        default=False, help_text="Also a deploy freeze: deployment preflight fails while it runs."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-starts_at"]

    def __str__(self) -> str:
        what = self.component or (self.rule and self.rule.name) or self.priority or "labels"
        return f"silence {what} until {self.ends_at:%Y-%m-%d %H:%M}"

    def clean(self) -> None:
        if self.ends_at and self.starts_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "The silence must end after it starts."})
        limit = timedelta(hours=settings.ALERTS_MAX_SILENCE_HOURS)
        if self.ends_at and self.starts_at and self.ends_at - self.starts_at > limit:
            raise ValidationError(
                {
                    "ends_at": "A silence may last at most "
                    f"{settings.ALERTS_MAX_SILENCE_HOURS} hours."
                }
            )
        if not (
            self.component or self.rule_id or self.priority or self.labels or self.freeze_deploys
        ):
            raise ValidationError("Say what to silence: a component, a rule, a priority or labels.")

    def matches(self, incident: Incident) -> bool:
        if self.component and self.component != incident.component:
            return False
        if self.rule_id and incident.details.get("rule_id") != self.rule_id:
            return False
        if self.priority and self.priority != incident.priority:
            return False
        labels = incident.details.get("labels") or {}
        return all(str(labels.get(k)) == str(v) for k, v in (self.labels or {}).items())

    @classmethod
    def active_for(cls, incident: Incident, now: datetime | None = None) -> Silence | None:
        now = now or timezone.now()
        for silence in cls.objects.filter(starts_at__lte=now, ends_at__gt=now):
            if silence.matches(incident):
                return silence
        return None


class Incident(models.Model):
    class Status(models.TextChoices):
        TRIGGERED = "triggered", "Triggered"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    # How a status and a priority are coloured wherever they are shown.
    STATUS_CSS = {"triggered": "state-bad", "acknowledged": "state-warn"}
    PRIORITY_CSS = {"critical": "state-bad", "high": "state-bad", "medium": "state-warn"}

    fingerprint = models.CharField(max_length=255)
    source = models.CharField(max_length=50)
    title = models.CharField(max_length=300)
    public_title = models.CharField(
        max_length=200,
        blank=True,
        help_text="What the public status page says about it; empty keeps it off the page. "
        "Written for customers, never the check's error.",
    )
    priority = models.CharField(max_length=10, choices=Priority.choices)
    component = models.CharField(max_length=100, blank=True)
    details = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.TRIGGERED)
    opened_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    count = models.PositiveIntegerField(default=1)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.CharField(max_length=300, blank=True)
    silence = models.ForeignKey(Silence, null=True, blank=True, on_delete=models.SET_NULL)
    escalation_policy = models.ForeignKey(
        EscalationPolicy, null=True, blank=True, on_delete=models.SET_NULL
    )
    escalation_level = models.IntegerField(default=-1, help_text="Highest level notified.")
    # Level delays count from here: the first notification, which a silence can postpone.
    notifying_since = models.DateTimeField(null=True, blank=True)
    next_escalation_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at"]
        constraints = [
            # The door's guarantee: one open incident per fingerprint, even with
            # two workers racing to open it.
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=~Q(status="resolved"),
                name="one_open_incident_per_fingerprint",
            )
        ]
        indexes = [models.Index(fields=["status", "priority"], name="incident_status_priority")]

    def __str__(self) -> str:
        # The priority has its own column and badge wherever an incident is shown.
        return f"#{self.pk} {self.title}" if self.pk else self.title

    @property
    def is_open(self) -> bool:
        return self.status != self.Status.RESOLVED

    follow_every = 10  # seconds: people act on it, workers escalate it

    @property
    def in_progress(self) -> bool:
        """Open incidents change under people's eyes (acknowledged, escalated, noted)."""
        return self.is_open

    @property
    def silenced(self) -> bool:
        return self.silence_id is not None

    def timeline(self) -> list[TimelineEntry]:
        return [
            TimelineEntry(e.at, e.get_kind_display(), str(e.user or ""), e.message)
            for e in self.events.select_related("user")
        ]

    def details_in_words(self) -> list[tuple[str, str]]:
        """The details as a person reads them: `Error rate: 37%`, `Labels: env=prod`."""
        lines = []
        for key, value in (self.details or {}).items():
            if key == "rule_id" or value in (None, "", {}, []):
                continue
            if isinstance(value, dict):
                value = ", ".join(f"{k}={v}" for k, v in value.items())
            elif isinstance(value, list):
                value = ", ".join(str(v) for v in value)
            lines.append((key.replace("_", " ").capitalize(), str(value)))
        return lines

    def related(self) -> list[tuple[str, models.Model]]:
        """What this incident is about or led to, as (what it is, the record): the
        environment and what serves there, its rollbacks, the health check, the rule,
        runbooks worked for it and the silence. Each of those pages links back here."""
        from deployments.models import Environment, RollbackRequest
        from dr.models import RunbookExecution, ServiceCheck

        found: list[tuple[str, models.Model]] = []
        env = Environment.objects.filter(name=self.component).first() if self.component else None
        if env is not None:
            found.append(("Environment", env))
            if live := env.live_deployment():
                found.append(("Live deployment", live))
            for rollback in RollbackRequest.objects.filter(
                environment=env, requested_at__gte=self.opened_at - timedelta(minutes=30)
            ).order_by("requested_at")[:5]:
                found.append(("Rollback", rollback))
        if self.component and (check := ServiceCheck.objects.filter(name=self.component).first()):
            found.append(("Health check", check))
        rule_id = (self.details or {}).get("rule_id")
        if rule_id and (rule := AlertRule.objects.filter(pk=rule_id).first()):
            found.append(("Alert rule", rule))
        for execution in RunbookExecution.objects.filter(incident=self).select_related("runbook"):
            found.append(("Runbook", execution))
        if self.silence_id:
            found.append(("Silenced by", self.silence))
        return found

    def add_note(self, user, text: str) -> IncidentEvent:
        """Someone working the incident writes down what they found or did."""
        if not user.has_perm(permissions.ACKNOWLEDGE_INCIDENT):
            raise PermissionDenied("You may not add notes to incidents.")
        if not text.strip():
            raise ValueError("The note is empty.")
        return self.log(IncidentEvent.Kind.NOTE, text.strip()[:5000], user=user)

    def log(self, kind: str, message: str = "", user=None, **data: Any) -> IncidentEvent:
        return IncidentEvent.objects.create(
            incident=self, kind=kind, message=message, user=user, data=data
        )


class IncidentEvent(models.Model):
    class Kind(models.TextChoices):
        OPENED = "opened", "Opened"
        REPEATED = "repeated", "Repeated"
        NOTIFIED = "notified", "Notified"
        ESCALATED = "escalated", "Escalated"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"
        SILENCED = "silenced", "Silenced"
        NOTE = "note", "Note"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=15, choices=Kind.choices)
    at = models.DateTimeField(default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    message = models.TextField(blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.kind} {self.message}"


class InboxMessage(models.Model):
    """What an inbox channel delivered: the console's own pager, read on the Inbox page."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="inbox")
    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    event = models.CharField(max_length=15)
    priority = models.CharField(max_length=10, blank=True)
    headline = models.CharField(max_length=300)
    text = models.TextField()
    ack_url = models.URLField(blank=True, max_length=1000)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # One message per incident and channel, updated as the incident moves on (as a pager
    # thread does); what it said before is kept, oldest first.
    updated_at = models.DateTimeField(default=timezone.now, db_index=True)
    history = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-updated_at", "-pk"]
        verbose_name = "inbox message"

    def __str__(self) -> str:
        return self.headline

    @classmethod
    def prune(cls, older_than: timedelta = timedelta(days=30)) -> int:
        return cls.objects.filter(created_at__lt=timezone.now() - older_than).delete()[0]


class Notification(models.Model):
    """One message about one incident event to one channel: saved before it is sent."""

    class Event(models.TextChoices):
        FIRING = "firing", "Firing"
        REPEAT = "repeat", "Still firing"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"
        TEST = "test", "Test"
        ANNOUNCE = "announce", "Announcement"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Waiting to retry"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    incident = models.ForeignKey(
        Incident, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=15, choices=Event.choices)
    level = models.IntegerField(default=0)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    created_at = models.DateTimeField(default=timezone.now)
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="A send still marked in flight after this was cut short: it is sent again.",
    )
    sent_at = models.DateTimeField(null=True, blank=True)
    http_status = models.IntegerField(null=True, blank=True)
    provider_code = models.CharField(
        max_length=255, blank=True, help_text="Error code or message ids."
    )
    error = models.TextField(blank=True)
    payload = models.JSONField(default=dict, blank=True, help_text="What an announcement says.")
    traceparent = models.CharField(
        max_length=64,
        blank=True,
        default=tracing.traceparent,
        editable=False,
        help_text="The trace that queued it (W3C traceparent): its send joins that trace.",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="notification_due")]

    def __str__(self) -> str:
        return f"{self.event} to {self.channel} ({self.status})"
