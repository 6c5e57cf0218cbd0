"""Environments, deployments with their checks and health samples, and the two approval
kinds of an environment: rollback requests and variable syncs (its variables are here too)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.db.models import Avg, F, Max, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.timesince import timesince
from django.utils.timezone import localtime

from alerts.incidents import announce, raise_incident, resolve_incident
from deployments import variables
from deployments.providers import PROVIDERS, ProviderError
from deployments.variables import VARIABLE_NAME
from opsconsole import permissions
from opsconsole.approvals.models import ApprovalRequest, RunStatus
from opsconsole.fields import EncryptedTextField, reveal
from opsconsole.timeline import TimelineEntry

log = logging.getLogger("opsconsole.deployments")


def default_endpoints() -> list[dict]:
    # Checked after a deploy: health, a public API path, and paths that may answer 401
    # (protected ones prove the service is up without credentials).
    return [
        {"path": "/health", "ok": [200]},
        {"path": "/api/videos/trending", "ok": [200]},
        {"path": "/api/auth/status", "ok": [200, 401]},
        {"path": "/metrics", "ok": [200, 401]},
    ]


@dataclass
class LiveState:
    """One environment at a glance (`Environment.live_state()`)."""

    environment: Environment
    version: str  # what serves now; empty when nothing is known
    deployment: Deployment | None
    source: str  # "provider" (it said so lately) or "records"
    since: datetime | None
    records_say: str  # the records' version where the provider says otherwise
    incidents: list[Any]
    pending: list[str]


class Environment(models.Model):
    class Mode(models.TextChoices):
        AUTOMATIC = "automatic", "Roll back automatically"
        ASK = "ask", "Ask for approval"

    name = models.CharField(max_length=50, unique=True)
    provider = models.CharField(max_length=20, choices=[(k, c.label) for k, c in PROVIDERS.items()])
    provider_config = models.JSONField(default=dict, blank=True)
    provider_secret = EncryptedTextField(
        blank=True, default="", help_text="API token of the provider."
    )
    base_url = models.URLField(
        blank=True, help_text="Where the service answers, e.g. https://api.example.com"
    )
    health_path = models.CharField(max_length=200, default="/health")
    endpoints = models.JSONField(
        default=default_endpoints,
        blank=True,
        help_text='[{"path": "/api/x", "ok": [200, 401]}, ...]',
    )
    smoke_urls = models.JSONField(
        default=list, blank=True, help_text="Extra full URLs that must answer 2xx."
    )
    two_person_rule = models.BooleanField(default=True)
    webhook_secret = EncryptedTextField(
        blank=True, default="", help_text="Signs deploy webhooks; empty: OPSCONSOLE_WEBHOOK_SECRET."
    )
    required_variables = models.JSONField(default=list, blank=True)
    # The rollback policy.
    max_error_rate = models.FloatField(default=5.0, help_text="Percent.")
    max_avg_response_ms = models.FloatField(default=2000.0)
    min_availability = models.FloatField(default=99.0, help_text="Percent.")
    watch_minutes = models.PositiveIntegerField(default=10)
    rollback_mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.ASK)
    stable_minutes = models.PositiveIntegerField(
        default=60, help_text="A rollback target must have run this long..."
    )
    stable_max_error_rate = models.FloatField(
        default=1.0, help_text="...with an error rate under this (%)."
    )
    probe_requests = models.PositiveIntegerField(
        default=5, help_text="Probe requests per endpoint per tick."
    )
    probe_timeout_seconds = models.FloatField(default=5.0)
    error_rate_metric = models.CharField(
        max_length=200,
        blank=True,
        help_text="Also watch this metric (percent), e.g. api.error_rate from Alerts.",
    )
    error_rate_labels = models.JSONField(
        default=dict, blank=True, help_text='e.g. {"environment": "production"}'
    )
    backup_target = models.ForeignKey(
        "backups.DatabaseTarget",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="The environment's database: preflight wants a recent backup of it.",
    )
    backup_max_age_hours = models.PositiveIntegerField(default=24)
    gradual_rollback = models.BooleanField(
        default=False,
        help_text="Shift traffic back in steps, watching each (providers with weights).",
    )
    gradual_steps = models.JSONField(
        default=list, blank=True, help_text="Percentages, e.g. [10, 50, 100]."
    )
    gradual_step_seconds = models.PositiveIntegerField(
        default=30, help_text="How long each step is watched."
    )
    backup_before_deploy = models.BooleanField(
        default=False, help_text="When the newest backup is too old, take one now (pre-deploy)."
    )
    # The deploy gate (POST /api/deploys/check and GitHub's deployment protection rule).
    require_deploy_approval = models.BooleanField(
        default=False,
        help_text="The deploy gate answers yes only once someone approved the version "
        "(by two people where the two-person rule applies).",
    )
    components = models.JSONField(
        default=list,
        blank=True,
        help_text="Incident components that also block a deploy, besides the environment's "
        'own name, e.g. ["api", "database"].',
    )
    variable_template = models.ForeignKey(
        "VariableTemplate",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="environments",
        help_text="The variables the service needs, with what each value must look like.",
    )
    # Keyed hashes of the provider's values when the console last set or read them all:
    # what "changed behind the console's back" is measured from. Never a value.
    provider_digests = models.JSONField(default=dict, blank=True, editable=False)
    variables_drift = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text='Names only: {"added": [...], "removed": [...], "changed": [...]}.',
    )
    drift_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # What the provider itself says is live, asked each minute by a worker (pages never
    # wait on a provider); empty where it cannot say.
    observed_version = models.CharField(max_length=200, blank=True, editable=False)
    observed_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.provider:
            try:
                self.provider_config = PROVIDERS[self.provider].validate(
                    self.provider_config or {}, reveal(self.provider_secret)
                )
            except ValueError as exc:
                raise ValidationError({"provider_config": str(exc)}) from None
        if self.gradual_rollback and self.provider and not self.backend.supports_weights:
            raise ValidationError(
                {"gradual_rollback": f"{self.backend.label} has no traffic weights (set_weights)."}
            )
        steps = self.gradual_steps or []
        if (
            not isinstance(steps, list)
            or not all(isinstance(x, int) and 0 < x <= 100 for x in steps)
            or (steps and (steps != sorted(steps) or steps[-1] != 100))
        ):
            raise ValidationError(
                {"gradual_steps": "Rising percentages ending at 100, e.g. [10, 50, 100]."}
            )
        if not str(self.health_path or "").startswith("/"):
            raise ValidationError({"health_path": "A path on the service, starting with /."})
        if not isinstance(self.endpoints, list) or not all(
            isinstance(e, dict) and str(e.get("path", "")).startswith("/") for e in self.endpoints
        ):
            raise ValidationError({"endpoints": 'A list like [{"path": "/health", "ok": [200]}].'})
        if not isinstance(self.components, list) or not all(
            isinstance(c, str) and c for c in self.components
        ):
            raise ValidationError({"components": 'A list of component names, e.g. ["api"].'})
        if not isinstance(self.required_variables, list) or not all(
            isinstance(n, str) and VARIABLE_NAME.fullmatch(n) for n in self.required_variables
        ):
            raise ValidationError(
                {"required_variables": 'A list of variable names, e.g. ["DATABASE_URL"].'}
            )

    @property
    def backend(self):
        return PROVIDERS[self.provider](self)

    # What the environment raises incidents about: its current deploy (a breach, a
    # failed deploy), a rollback that failed, and a rollback with no stable target.
    INCIDENTS = ("deploy", "rollback-failed", "no-rollback-target", "variables-drift")

    def fingerprint(self, about: str = "deploy") -> str:
        """The key of this environment's incident `about` one of INCIDENTS."""
        if about not in self.INCIDENTS:
            raise ValueError(f"an environment raises no {about!r} incident")
        return f"{about}:{self.pk}"

    def signing_secrets(self) -> list[str]:
        return [s for s in (reveal(self.webhook_secret), settings.OPSCONSOLE_WEBHOOK_SECRET) if s][
            :1
        ]

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    def probe_targets(self) -> list[tuple[str, list[int]]]:
        targets = [(self.url(self.health_path), [200])]
        targets += [
            (self.url(e["path"]), list(e.get("ok") or [200]))
            for e in self.endpoints
            if e["path"] != self.health_path
        ]
        return targets

    def breach_of(self, sample: HealthSample) -> str | None:
        """Why a sample breaks the rollback policy, or None."""
        if sample.error_rate > self.max_error_rate:
            return f"error rate {sample.error_rate:.1f} % above {self.max_error_rate:g} %"
        if sample.metric_error_rate is not None and sample.metric_error_rate > self.max_error_rate:
            return (
                f"{self.error_rate_metric} at {sample.metric_error_rate:.1f} % "
                f"above {self.max_error_rate:g} %"
            )
        if sample.avg_ms > self.max_avg_response_ms:
            return f"average response {sample.avg_ms:.0f} ms above {self.max_avg_response_ms:g} ms"
        if sample.availability < self.min_availability:
            return f"availability {sample.availability:.1f} % below {self.min_availability:g} %"
        return None

    # --- variables (names and keyed hashes only; a value is never shown) -------------
    def required_names(self) -> set[str]:
        names = set(self.required_variables or [])
        if self.variable_template_id:
            names |= {v.name for v in self.variable_template.variables.all() if v.required}
        return names

    def variable_rules(self) -> dict[str, TemplateVariable]:
        if not self.variable_template_id:
            return {}
        return {v.name: v for v in self.variable_template.variables.all()}

    def live_variables(self) -> dict[str, str]:
        """The provider's variables (to compare, never to show); ProviderError when it
        cannot list them."""
        live = self.backend.variables()
        if live is None:
            raise ProviderError(f"{self.backend.label} cannot list variables")
        return live

    def variable_diff(self) -> dict[str, list[str]]:
        """Names only: missing on the provider, extra there, or set to a different value."""
        live = self.live_variables()
        wanted = {v.name: reveal(v.value) for v in self.variables.all()}
        return {
            "missing": sorted(set(wanted) - set(live)),
            "extra": sorted(set(live) - set(wanted)),
            "different": sorted(n for n in set(wanted) & set(live) if wanted[n] != live[n]),
        }

    def variable_report(self, live: dict[str, str]) -> dict:
        """What a deploy would meet: required names missing on the provider, values that
        break the template's rules (named, with the rule, never the value), and drift."""
        rules = self.variable_rules()
        invalid = {
            name: problem
            for name, rule in sorted(rules.items())
            if name in live and (problem := rule.problem(live[name]))
        }
        found = variables.drift(self.provider_digests, self._digests(live))
        return {
            "missing": sorted(self.required_names() - set(live)),
            "invalid": invalid,
            "drift": found,
        }

    def _digests(self, values: dict[str, str]) -> dict:
        return variables.digests(values, scope=str(self.pk))

    def adopt_provider_state(self, live: dict[str, str]) -> None:
        """The provider's values are now what the console expects there (after a sync,
        an import from the provider, or the first look): no drift from here."""
        Environment.objects.filter(pk=self.pk).update(
            provider_digests=self._digests(live),
            variables_drift={},
            drift_checked_at=timezone.now(),
        )
        self.refresh_from_db(fields=["provider_digests", "variables_drift", "drift_checked_at"])
        resolve_incident(self.fingerprint("variables-drift"), reason="variables agree again")

    def check_drift(self) -> variables.Drift | None:
        """Compare the provider's values with what the console last set or saw there;
        raise an incident naming what changed behind its back (never a value)."""
        live = self.backend.variables()
        if live is None:
            return None
        found = variables.drift(self.provider_digests, self._digests(live))
        if found is None:  # no baseline yet, or a new key: this look is the baseline
            self.adopt_provider_state(live)
            return variables.Drift()
        Environment.objects.filter(pk=self.pk).update(
            variables_drift=found.as_dict(), drift_checked_at=timezone.now()
        )
        self.refresh_from_db(fields=["variables_drift", "drift_checked_at"])
        if found:
            raise_incident(
                source="deployments",
                fingerprint=self.fingerprint("variables-drift"),
                title=(
                    f"Variables of {self} changed on {self.backend.label} behind the "
                    f"console's back: {found.describe()}"
                )[:300],
                priority="medium",
                component=self.name,
                details={
                    **found.as_dict(),
                    "what to do": (
                        "import from the provider to keep its values, or sync the variables "
                        "to put the console's back"
                    ),
                },
            )
        else:
            resolve_incident(self.fingerprint("variables-drift"), reason="variables agree again")
        return found

    def import_variables(self, values: dict[str, str], user, *, source: str) -> list[str]:
        """Set the console's values (a .env upload, or the provider's own); returns the
        names that changed. Only whoever may edit the environment may do it."""
        if not user.has_perm("deployments.change_environment"):
            raise PermissionDenied("You may not change this environment's variables.")
        bad = sorted(n for n in values if not variables.VARIABLE_NAME.fullmatch(n))
        if bad:
            raise ValidationError(f"not variable names: {', '.join(bad[:5])}")
        changed = []
        with transaction.atomic():
            current = {v.name: v for v in self.variables.select_for_update()}
            for name, value in sorted(values.items()):
                row = current.get(name)
                if row is None:
                    EnvironmentVariable.objects.create(environment=self, name=name, value=value)
                elif reveal(row.value) != value:
                    row.value = value
                    row.save(update_fields=["value"])
                else:
                    continue
                changed.append(name)
        log.info("variables of %s imported from %s by %s: %s", self, source, user, changed)
        return changed

    def import_from_provider(self, user) -> list[str]:
        live = self.live_variables()
        changed = self.import_variables(live, user, source=self.backend.label)
        self.adopt_provider_state(live)
        return changed

    def apply_template_defaults(self, user) -> list[str]:
        """Give every template variable the environment lacks its default value."""
        if not self.variable_template_id:
            return []
        have = set(self.variables.values_list("name", flat=True))
        defaults = self.variable_template.defaults_for(self)
        return self.import_variables(
            {n: v for n, v in defaults.items() if n not in have}, user, source="the template"
        )

    def request_variable_sync(self, user) -> VariableSyncRequest:
        """Two-person environments file a request; for others it is approved at once and
        queued for a worker."""
        diff = self.variable_diff()
        names = sorted(diff["missing"] + diff["different"])
        VariableSyncRequest.check_can_request(user)
        request = VariableSyncRequest.objects.create(
            environment=self, requested_by=user, names=names
        )
        if not self.two_person_rule:
            request.approve_automatically("the environment needs no second person")
        return request

    def push_variables(self) -> None:
        values = {v.name: reveal(v.value) for v in self.variables.all()}
        before = self.backend.variables()
        if before is not None:
            # What the provider will hold is recorded first: a worker that dies between the
            # write and the read-back leaves no false "changed behind our back".
            self.adopt_provider_state({**before, **values})
        self.backend.set_variables(values)
        live = self.backend.variables()
        if live is not None:
            self.adopt_provider_state(live)

    # The provider's answer counts for this long; after that the records speak.
    OBSERVED_FRESH = timedelta(minutes=5)

    def observe(self) -> str | None:
        """Ask the provider what is live and keep its answer (None: it cannot say)."""
        try:
            version = self.backend.live_version()
        except ProviderError:
            version = None
        Environment.objects.filter(pk=self.pk).update(
            observed_version=version or "", observed_at=timezone.now() if version else None
        )
        self.observed_version, self.observed_at = version or "", timezone.now()
        return version

    def live_state(self) -> LiveState:
        """What serves now and since when, whether it is healthy, and what is pending:
        one row of the dashboard's Environments panel."""
        from alerts.models import Incident

        records = self.live_deployment()
        deployment, version, source = records, records.version if records else "", "records"
        fresh = self.observed_at and timezone.now() - self.observed_at < self.OBSERVED_FRESH
        if fresh and self.observed_version:
            source = "provider"
            if self.observed_version != version:
                version = self.observed_version
                deployment = self.deployments.filter(version=version).first()
        since = None
        if deployment is not None:
            since = deployment.live_again_since() or deployment.live_at or deployment.received_at
        incidents = Incident.objects.filter(
            component__in=[self.name, *self.components], status__in=["triggered", "acknowledged"]
        )
        pending = [str(r) for r in self.rollbacks.filter(status__in=RollbackRequest.ACTIVE)]
        pending += [
            f"deploy {d.version}: {d.get_status_display().lower()}"
            for d in self.deployments.filter(status__in=Deployment.ACTIVE)
        ]
        pending += [str(a) for a in self.deploy_approvals.filter(status="requested")]
        return LiveState(
            environment=self,
            version=version,
            deployment=deployment,
            source=source,
            since=since,
            records_say=records.version if records and records.version != version else "",
            incidents=list(incidents.order_by("opened_at")[:5]),
            pending=pending,
        )

    def live_deployment(self) -> Deployment | None:
        """What serves now, by the records: the deployment that went live last, unless a
        rollback finished after that (then the rollback's target). One that failed or was
        replaced before it went live never counts."""
        newest = Deployment.served(self.deployments).order_by("-served_at").first()
        back = (
            self.rollbacks.filter(status="succeeded", finished_at__isnull=False)
            .select_related("target_deployment")
            .order_by("-finished_at")
            .first()
        )
        if back is not None and (newest is None or back.finished_at > newest.served_at):
            return back.target_deployment
        return newest

    def rollback_candidates(self, live: Deployment | None) -> list[Deployment]:
        """Versions a person may move to: others that served, newest first."""
        rows = self.deployments.filter(
            status__in=[Deployment.Status.SUCCEEDED, Deployment.Status.ROLLED_BACK]
        )
        if live is not None:
            rows = rows.exclude(pk=live.pk)
        return list(rows.order_by("-received_at")[:20])

    def stable_target(self, before: Deployment | None = None) -> Deployment | None:
        """The newest earlier deployment that ran long enough with a low error rate."""
        candidates = self.deployments.filter(status=Deployment.Status.SUCCEEDED)
        if before is not None:
            candidates = candidates.filter(received_at__lt=before.received_at).exclude(pk=before.pk)
        for candidate in candidates.order_by("-received_at"):
            if candidate.ran_for() >= timedelta(minutes=self.stable_minutes) and (
                candidate.worst_error_rate() is None
                or candidate.worst_error_rate() < self.stable_max_error_rate
            ):
                return candidate
        return None


class Deployment(models.Model):
    """One deploy of a version to an environment, as the pipeline reported it."""

    # Values from webhooks that may reach a command provider's argv: a conservative
    # alphabet, and never a leading "-" (it would be read as an option).
    ARGV_VALUE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._:/@+=-]{0,199}")
    COMMIT = re.compile(r"[0-9a-fA-F]{4,64}")

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        PREFLIGHT = "preflight", "Preflight"
        DEPLOYING = "deploying", "Deploying"
        VERIFYING = "verifying", "Verifying"
        WATCHING = "watching", "Watching"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        ROLLED_BACK = "rolled_back", "Rolled back"
        SUPERSEDED = "superseded", "Superseded"

    ACTIVE = ("received", "preflight", "deploying", "verifying", "watching")
    # How a status is coloured wherever it is shown (admin list, dashboard).
    STATUS_CSS = {
        "succeeded": "state-ok",
        "watching": "state-warn",
        "verifying": "state-warn",
        "failed": "state-bad",
        "rolled_back": "state-bad",
    }

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="deployments"
    )
    external_id = models.CharField(max_length=200, help_text="The provider's or CI's id.")
    version = models.CharField(max_length=200)
    commit = models.CharField(max_length=64, blank=True)
    started_by = models.CharField(max_length=200, blank=True)
    status = models.CharField(
        max_length=15, choices=Status.choices, default=Status.RECEIVED, db_index=True
    )
    url = models.URLField(blank=True, max_length=500)
    received_at = models.DateTimeField(default=timezone.now)
    live_at = models.DateTimeField(null=True, blank=True, help_text="When it started serving.")
    watch_until = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(
        null=True, blank=True, help_text="When the next one replaced it."
    )
    notes = models.TextField(blank=True)
    migrations = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "external_id"], name="one_deployment_per_external_id"
            )
        ]

    def __str__(self) -> str:
        return f"{self.environment} {self.version} ({self.external_id})"

    @property
    def in_progress(self) -> bool:
        """Still being deployed, verified or watched: its pages follow it."""
        return self.status in self.ACTIVE

    def facts(self) -> list[tuple[str, str]]:
        """Where it stands and what it is, in words, for its page."""
        live = self.environment.live_deployment()
        situation = self.situation(live)
        facts = [
            ("Status", f"{self.get_status_display()}{f' — {situation}' if situation else ''}"),
            ("Environment", str(self.environment)),
            ("Version", f"{self.version}{f' ({self.commit[:12]})' if self.commit else ''}"),
        ]
        if self.started_by:
            facts.append(("Deployed by", self.started_by))
        if self.status not in self.ACTIVE:
            facts.append(("Its record", self.track_record()))
        if self.migrations:
            names = [
                f"{m.get('name', '?')}{' (irreversible)' if m.get('irreversible') else ''}"
                for m in self.migrations
                if isinstance(m, dict)
            ]
            facts.append(("Migrations", ", ".join(names)))
        if self.notes:
            facts.append(("Notes", self.notes))
        return facts

    def timeline(self) -> list[TimelineEntry]:
        """Received, live, every check with its phase, finished, replaced."""
        entries = [TimelineEntry(self.received_at, "Received", self.started_by, "")]
        if self.live_at:
            entries.append(TimelineEntry(self.live_at, "Live", "", ""))
        entries += [c.as_entry(c.get_phase_display()) for c in self.checks.order_by("at", "pk")]
        if self.finished_at:
            entries.append(TimelineEntry(self.finished_at, self.get_status_display(), "", ""))
        if self.ended_at:
            entries.append(TimelineEntry(self.ended_at, "Stopped serving", "", ""))
        if again := self.live_again_since():
            entries.append(TimelineEntry(again, "Live again (rollback)", "", ""))
        return sorted(entries, key=lambda e: e.at)

    def related(self) -> list[tuple[str, models.Model]]:
        """Incidents about its environment while it served, and rollbacks from and to it."""
        from alerts.models import Incident

        env = self.environment
        found: list[tuple[str, models.Model]] = [
            ("Incident", incident)
            for incident in Incident.objects.filter(
                component__in=[env.name, *env.components],
                opened_at__gte=self.received_at,
                opened_at__lte=self.ended_at or timezone.now(),
            ).order_by("opened_at")[:10]
        ]
        found += [("Rolled back from here", r) for r in self.rollbacks_from.all()[:5]]
        found += [("Rolled back to here", r) for r in self.rollbacks_to.all()[:5]]
        return found

    def live_again_since(self) -> datetime | None:
        """When a rollback made it live again, if one did after it first went out."""
        back = (
            self.rollbacks_to.filter(status="succeeded", finished_at__isnull=False)
            .order_by("-finished_at")
            .first()
        )
        return back.finished_at if back is not None else None

    @classmethod
    def with_situation(cls, rows: models.QuerySet) -> models.QuerySet:
        """`rows` with what `situation()` reads, in the same query (a list of a hundred
        deployments asks once, not three times per row)."""
        succeeded = RollbackRequest.objects.filter(status="succeeded", finished_at__isnull=False)
        return rows.annotate(
            live_again_at=Subquery(
                succeeded.filter(target_deployment=OuterRef("pk"))
                .order_by("-finished_at")
                .values("finished_at")[:1]
            ),
            rolled_back_to=Subquery(
                succeeded.filter(from_deployment=OuterRef("pk"))
                .order_by("-finished_at")
                .values("target_deployment__version")[:1]
            ),
            # What went live after it last started serving.
            next_version=Subquery(
                cls.served(cls.objects.filter(environment=OuterRef("environment")))
                .filter(
                    served_at__gt=Coalesce(
                        OuterRef("live_again_at"), OuterRef("live_at"), OuterRef("received_at")
                    )
                )
                .order_by("served_at")
                .values("version")[:1]
            ),
        )

    def situation(self, live: Deployment | None) -> str:
        """Where it stands now that later things happened: `live again since …`,
        `rolled back to v1.0`, `replaced by v1.3`."""
        if not hasattr(self, "next_version"):
            row = Deployment.with_situation(Deployment.objects.filter(pk=self.pk)).get()
            self.live_again_at, self.rolled_back_to = row.live_again_at, row.rolled_back_to
            self.next_version = row.next_version
        if live is not None and live.pk == self.pk:
            again = self.live_again_at
            return f"live again since {localtime(again):%Y-%m-%d %H:%M:%S}" if again else "live"
        if self.rolled_back_to:
            return f"rolled back to {self.rolled_back_to}"
        if self.next_version and self.status not in self.ACTIVE:
            return f"replaced by {self.next_version}"
        return ""

    @classmethod
    def argv_value_problem(cls, field: str, value) -> str | None:
        """Why a webhook's `field` value is refused, or None."""
        pattern = cls.COMMIT if field == "commit" else cls.ARGV_VALUE
        if not isinstance(value, str | int) or isinstance(value, bool):
            return "must be a string"
        if not pattern.fullmatch(str(value)):
            return (
                "a hexadecimal commit id"
                if field == "commit"
                else "letters, digits and . _ : / @ + = - only (at most 200), not starting with -"
            )
        return None

    # Reached only by going live: a row in one of these served even without a live_at
    # (deploys reported before live_at was recorded, or reported already live).
    SERVED = ("verifying", "watching", "succeeded", "rolled_back")

    @classmethod
    def served(cls, rows: models.QuerySet) -> models.QuerySet:
        """The deployments among `rows` that went live, with `served_at` (when)."""
        return rows.filter(Q(live_at__isnull=False) | Q(status__in=cls.SERVED)).annotate(
            served_at=Coalesce("live_at", "received_at")
        )

    def ran_for(self, now: datetime | None = None) -> timedelta:
        """How long it has served since it last went live (a version live again after a
        rollback counts from then: the time it was not serving is never counted)."""
        start = self.live_again_since() or self.live_at or self.received_at
        return (self.ended_at or now or timezone.now()) - start

    def worst_error_rate(self) -> float | None:
        return self.samples.aggregate(m=Max("error_rate"))["m"]

    def track_record(self) -> str:
        """How it fared while live, in words: `ran 3 days, 0.4 % errors on average (worst
        1.2 %) over 120 checks`."""
        numbers = self.samples.aggregate(a=Avg("error_rate"), m=Max("error_rate"))
        end = self.ended_at or timezone.now()
        ran = f"ran {timesince(end - self.ran_for(end), end)}"
        if numbers["a"] is None:
            return f"{ran}; no traffic checks recorded"
        count = self.samples.count()
        return (
            f"{ran}; {numbers['a']:.1f} % errors on average (worst {numbers['m']:.1f} %) "
            f"over {count} check{'s' if count != 1 else ''}"
        )

    def average_error_rate(self) -> float | None:
        return self.samples.aggregate(a=Avg("error_rate"))["a"]

    def record_check(
        self, phase: str, name: str, passed: bool, detail: str = "", duration_ms: float = 0
    ) -> DeploymentCheck:
        return DeploymentCheck.objects.create(
            deployment=self,
            phase=phase,
            name=name,
            passed=passed,
            detail=detail[:2000],
            duration_ms=duration_ms,
        )

    def irreversible_migrations_since(self, target: Deployment) -> list[str]:
        """Migrations this deployment applied that the target did not have and cannot be undone."""
        theirs = {m.get("name") for m in target.migrations if isinstance(m, dict)}
        return [
            m.get("name", "?")
            for m in self.migrations
            if isinstance(m, dict) and m.get("irreversible") and m.get("name") not in theirs
        ]


class DeploymentCheck(models.Model):
    class Phase(models.TextChoices):
        CI = "ci", "CI"
        PREFLIGHT = "preflight", "Preflight"
        POST_DEPLOY = "post_deploy", "Post-deploy"
        ROLLBACK = "rollback", "Rollback verification"

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="checks")
    phase = models.CharField(max_length=15, choices=Phase.choices)
    name = models.CharField(max_length=200)
    passed = models.BooleanField()
    detail = models.TextField(blank=True)
    duration_ms = models.FloatField(default=0)
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.phase} {self.name}: {'ok' if self.passed else 'failed'}"

    def as_entry(self, what: str) -> TimelineEntry:
        """`live version: passed (live: v1.0)`, `http://…/health: failed (expected [200]), 31 ms`"""
        outcome = "passed" if self.passed else "failed"
        detail = f" ({self.detail})" if self.detail else ""
        took = f", {self.duration_ms:.0f} ms" if self.duration_ms else ""
        return TimelineEntry(
            self.at, what, "", f"{self.name}: {outcome}{detail}{took}", self.passed
        )


class HealthSample(models.Model):
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField(default=timezone.now)
    requests = models.PositiveIntegerField(default=0)
    error_rate = models.FloatField(help_text="Percent.")
    avg_ms = models.FloatField()
    p95_ms = models.FloatField()
    availability = models.FloatField(help_text="Percent of probes answered as expected.")
    metric_error_rate = models.FloatField(
        null=True, blank=True, help_text="From the environment's metric, if configured."
    )
    passed = models.BooleanField()
    breach = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["at"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} err {self.error_rate:.1f}% avg {self.avg_ms:.0f}ms"


class RollbackRequest(ApprovalRequest):
    REQUEST_PERMISSION = permissions.REQUEST_ROLLBACK
    APPROVE_PERMISSION = permissions.APPROVE_ROLLBACK

    class Status(models.TextChoices):
        REQUESTED = "requested", "Requested"
        APPROVED = "approved", "Approved"
        EXECUTING = "executing", "Executing"
        VERIFYING = "verifying", "Verifying"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        REJECTED = "rejected", "Rejected"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = ("requested", "approved", "executing", "verifying")
    RUNNING_STATES = ("executing", "verifying")
    SHOWN_WITH = ("environment", "target_deployment")
    FAILURES = (ProviderError,)

    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.REQUESTED, db_index=True
    )
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="rollbacks")
    from_deployment = models.ForeignKey(
        Deployment, null=True, blank=True, on_delete=models.SET_NULL, related_name="rollbacks_from"
    )
    target_deployment = models.ForeignKey(
        Deployment, on_delete=models.PROTECT, related_name="rollbacks_to"
    )
    automatic = models.BooleanField(default=False)
    provider_response = models.JSONField(default=dict, blank=True)
    gradual_progress = models.JSONField(
        default=dict,
        blank=True,
        editable=False,
        help_text="A gradual rollback's slot and the share it reached, step by step.",
    )
    warnings = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment"],
                condition=Q(status__in=["requested", "approved", "executing", "verifying"]),
                name="one_active_rollback_per_environment",
            )
        ]

    def __str__(self) -> str:
        return f"rollback {self.environment} to {self.target_deployment.version}"

    @staticmethod
    def describe(
        env: Environment, current: Deployment | None, target: Deployment
    ) -> list[tuple[str, str]]:
        """What a person asks for or approves, in words: the same lines on the request's
        confirmation page, its approve page and its own page."""
        from deployments.rollbacks import migration_warnings

        crossed = migration_warnings(current, target)
        two = "two people (requester and approver)" if env.two_person_rule else "one person"
        return [
            ("Environment", str(env)),
            (
                "Live now",
                f"{current.version}, deployed {timesince(current.received_at)} ago"
                if current
                else "nothing recorded",
            ),
            (
                "Back to",
                f"{target.version} ({target.commit[:12] or 'no commit'}), deployed "
                f"{timesince(target.received_at)} ago",
            ),
            ("Its record", target.track_record()),
            ("Migrations", crossed.capitalize() if crossed else "None it cannot undo"),
            ("Needs", two),
        ]

    def facts(self) -> list[tuple[str, str]]:
        if self.status in self.ACTIVE:
            # Decided on what serves now (the provider's word first), not on what served
            # when it was asked.
            current = self.environment.live_state().deployment or self.from_deployment
            return self.describe(self.environment, current, self.target_deployment)
        facts = self.describe(self.environment, self.from_deployment, self.target_deployment)
        return [("Was live" if label == "Live now" else label, text) for label, text in facts]

    def steps(self) -> list[TimelineEntry]:
        """The verification after the provider's rollback, check by check."""
        if not self.started_at:
            return []
        checks = self.target_deployment.checks.filter(
            phase=DeploymentCheck.Phase.ROLLBACK,
            at__gte=self.started_at,
            at__lte=self.finished_at or timezone.now(),
        ).order_by("at", "pk")
        return [c.as_entry("Checked") for c in checks]

    def related(self) -> list[tuple[str, models.Model]]:
        """The deployments it moves between and the incidents around it."""
        from alerts.models import Incident

        env = self.environment
        found: list[tuple[str, models.Model]] = []
        if self.from_deployment_id:
            found.append(("From", self.from_deployment))
        found.append(("To", self.target_deployment))
        around = Incident.objects.filter(
            component__in=[env.name, *env.components],
            opened_at__gte=self.requested_at - timedelta(minutes=30),
            opened_at__lte=(self.finished_at or timezone.now()) + timedelta(minutes=5),
        )
        found += [("Incident", i) for i in around.order_by("opened_at")[:10]]
        return found

    def requires_two_people(self) -> bool:
        return self.environment.two_person_rule

    def confirmation_phrase(self) -> str:
        return self.environment.name

    def run(self) -> dict:
        # deployments.rollbacks imports these models: import at use.
        from deployments.rollbacks import carry_out_rollback

        return carry_out_rollback(self)

    def _announce(self, title: str) -> None:
        announce(
            "deployments",
            title,
            component=self.environment.name,
            details={
                "from": self.from_deployment.version if self.from_deployment else None,
                "to": self.target_deployment.version,
                "reason": self.reason,
                "warnings": self.warnings,
            },
        )

    def on_started(self) -> None:
        # News, not an alarm: a rollback people asked for (or the policy chose) pages
        # nobody. Only a failed one is an incident (on_failed, interruption_message).
        self._announce(f"Rolling back {self.environment} to {self.target_deployment.version}")

    def on_succeeded(self) -> None:
        env, target = self.environment, self.target_deployment
        if self.from_deployment_id:
            Deployment.objects.filter(pk=self.from_deployment_id).update(
                status=Deployment.Status.ROLLED_BACK
            )
        # Only the target serves now: whatever served before ends here (one that never
        # went live gets no end time), and the target's old end time no longer holds: it
        # serves again, counted from now ("live again since").
        Deployment.served(env.deployments.exclude(pk=target.pk)).exclude(
            status__in=Deployment.ACTIVE
        ).filter(ended_at__isnull=True).update(ended_at=self.finished_at or timezone.now())
        Deployment.objects.filter(pk=target.pk).update(ended_at=None)
        self._announce(f"{env} is back on {target.version}")
        resolve_incident(env.fingerprint(), reason=f"rolled back to {target.version}")

    def on_failed(self, message: str) -> None:
        env = self.environment
        raise_incident(
            source="deployments",
            fingerprint=env.fingerprint("rollback-failed"),
            title=(
                f"Rollback of {env} to {self.target_deployment.version} failed: "
                "manual intervention required"
            ),
            priority="critical",
            component=env.name,
            details={"error": message[:500]},
        )

    def interruption_message(self) -> str:
        return (
            "the worker running the rollback stopped (its lease ran out); marked failed. "
            "Check the jobs worker's log for a crash or an out-of-memory kill, and which "
            "version is live, before rolling back again."
        )

    def on_lease_expired(self) -> bool:
        """A gradual rollback cut short is never left split: traffic goes back whole to
        what served before it began (the known state), then the request fails saying so."""
        progress = self.gradual_progress or {}
        if self.status != self.Status.EXECUTING or "percent" not in progress:
            return super().on_lease_expired()
        slot = progress.get("slot")
        try:
            self.environment.backend.abort(slot if slot is not None else self.target_deployment)
        except Exception as exc:
            return self.fail(
                f"the worker stopped at {progress['percent']} % of a gradual rollback and "
                f"returning traffic failed too ({type(exc).__name__}: {exc}): traffic is still "
                f"split; set it by hand"
            )
        return self.fail(
            f"the worker stopped at {progress['percent']} % of a gradual rollback; traffic "
            f"was returned whole to the version that served before it. Check the jobs "
            f"worker's log, then request the rollback again"
        )


class EnvironmentVariable(models.Model):
    """A variable the environment's service should have; the value is encrypted and never shown."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="variables")
    name = models.CharField(
        max_length=200,
        validators=[
            RegexValidator(VARIABLE_NAME, "Letters, digits and _, not starting with a digit.")
        ],
    )
    value = EncryptedTextField(blank=True, default="")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "name"], name="one_variable_per_name")
        ]

    def __str__(self) -> str:
        return self.name


class VariableSyncRequest(ApprovalRequest):
    """Pushing the console's variables to the provider (approved first where two are needed)."""

    REQUEST_PERMISSION = permissions.RUN_JOBS
    APPROVE_PERMISSION = permissions.APPROVE_ROLLBACK
    SHOWN_WITH = ("environment",)
    FAILURES = (ProviderError,)

    Status = RunStatus

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REQUESTED)
    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="variable_syncs"
    )
    names = models.JSONField(default=list, help_text="What will change (names only).")

    def __str__(self) -> str:
        return f"sync variables of {self.environment}"

    def requires_two_people(self) -> bool:
        return self.environment.two_person_rule

    def confirmation_phrase(self) -> str:
        return self.environment.name

    def run(self) -> None:
        self.environment.push_variables()


class VariableTemplate(models.Model):
    """The variables a service needs: each name, what it is for, what a value must look
    like, and the values each environment starts with."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name

    def defaults_for(self, environment: Environment) -> dict[str, str]:
        """Starting values: the environment's own default, else the one for every
        environment."""
        found: dict[str, str] = {}
        rows = self.defaults.filter(Q(environment=environment) | Q(environment=None))
        # Every environment's first, the environment's own last (it wins); PostgreSQL
        # sorts NULL last unless told.
        for row in rows.order_by(F("environment_id").asc(nulls_first=True)):
            found[row.name] = reveal(row.value)
        return found


class TemplateVariable(models.Model):
    class Kind(models.TextChoices):
        TEXT = "text", "Any text"
        URL = "url", "A URL"
        NUMBER = "number", "A number"
        ENUM = "enum", "One of a list"
        PATTERN = "pattern", "Matches a pattern"

    template = models.ForeignKey(
        VariableTemplate, on_delete=models.CASCADE, related_name="variables"
    )
    name = models.CharField(max_length=200)
    description = models.CharField(max_length=300, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.TEXT)
    rule = models.CharField(
        max_length=500,
        blank=True,
        help_text="For a list: the choices, separated by commas. For a pattern: a regular "
        "expression the whole value must match.",
    )
    required = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["template", "name"], name="one_template_variable")
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not VARIABLE_NAME.fullmatch(self.name or ""):
            raise ValidationError({"name": "Letters, digits and _, not starting with a digit."})
        if self.kind == self.Kind.ENUM and not self.choices():
            raise ValidationError({"rule": "List the choices, separated by commas."})
        if self.kind == self.Kind.PATTERN:
            try:
                re.compile(self.rule)
            except re.error as exc:
                raise ValidationError({"rule": f"Not a regular expression: {exc}."}) from None
            if not self.rule:
                raise ValidationError({"rule": "Give the pattern a value must match."})

    def choices(self) -> list[str]:
        return [c.strip() for c in self.rule.split(",") if c.strip()]

    def problem(self, value: str) -> str | None:
        """Why `value` breaks the rule, in words that never repeat the value; or None."""
        if value == "":
            # An optional variable may be empty ("empty turns it off").
            return f"{self.name} is empty" if self.required else None
        if self.kind == self.Kind.URL:
            # Connection strings count (postgres://user@db:5432/x, with hosts like "db"
            # that a web URL validator refuses): a scheme, a host, no spaces.
            parts = urlsplit(value)
            if not (parts.scheme and parts.netloc) or any(c.isspace() for c in value):
                return f"{self.name} is not a URL"
        elif self.kind == self.Kind.NUMBER:
            try:
                float(value)
            except ValueError:
                return f"{self.name} is not a number"
        elif self.kind == self.Kind.ENUM and value not in self.choices():
            return f"{self.name} is not one of {', '.join(self.choices())}"
        elif self.kind == self.Kind.PATTERN and not re.fullmatch(self.rule, value):
            return f"{self.name} does not match {self.rule}"
        return None


class TemplateDefault(models.Model):
    """A starting value of a template variable, for one environment or for every one."""

    template = models.ForeignKey(
        VariableTemplate, on_delete=models.CASCADE, related_name="defaults"
    )
    name = models.CharField(max_length=200)
    environment = models.ForeignKey(
        Environment,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="Empty: every environment.",
    )
    value = EncryptedTextField(blank=True, default="")

    class Meta:
        ordering = ["name", "environment_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "name", "environment"], name="one_default_per_environment"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.environment or 'every environment'})"

    def clean(self) -> None:
        if self.template_id and not self.template.variables.filter(name=self.name).exists():
            raise ValidationError({"name": f"The template has no variable {self.name!r}."})


class DeployApproval(ApprovalRequest):
    """A version may go out to an environment that asks for approval first: the deploy
    gate files this and answers "waiting" until someone decides."""

    REQUEST_PERMISSION = permissions.REQUEST_DEPLOY
    APPROVE_PERMISSION = permissions.APPROVE_DEPLOY
    SHOWN_WITH = ("environment",)

    Status = RunStatus
    GRANTED = (RunStatus.APPROVED, RunStatus.RUNNING, RunStatus.SUCCEEDED)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REQUESTED)
    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="deploy_approvals"
    )
    version = models.CharField(max_length=200)
    commit = models.CharField(max_length=64, blank=True)
    pipeline_url = models.URLField(max_length=500, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        verbose_name = "deploy approval"

    def __str__(self) -> str:
        return f"deploy {self.version} to {self.environment}"

    def requires_two_people(self) -> bool:
        return self.environment.two_person_rule

    def confirmation_phrase(self) -> str:
        return self.environment.name

    def run(self) -> None:
        """Nothing to run: the decision is what the gate waits for."""

    def used(self) -> bool:
        """An approval lets one deploy through, as GitHub's required reviewers approve one
        run: once a deploy of this commit (or version) was reported after it, it is spent."""
        if self.status not in self.GRANTED or self.decided_at is None:
            return False
        later = self.environment.deployments.filter(received_at__gt=self.decided_at)
        if self.commit:
            return later.filter(commit__iexact=self.commit).exists()
        return later.filter(version=self.version).exists()

    def on_succeeded(self) -> None:
        self._answer_waiting_checks()

    def reject(self, user, *, note: str = "") -> None:
        super().reject(user, note=note)
        self._answer_waiting_checks()

    def _answer_waiting_checks(self) -> None:
        """Pipelines that cannot poll (GitHub's protection rule) hear the decision now."""
        from opsconsole.tasks import enqueue

        pks = list(
            self.gate_checks.filter(
                source=GateCheck.Source.GITHUB, answer=GateCheck.Answer.WAITING
            ).values_list("pk", flat=True)
        )
        for pk in pks:
            transaction.on_commit(lambda pk=pk: enqueue("deployments.tasks.recheck_gate", pk))


class GateCheck(models.Model):
    """One question to the deploy gate and its answer, with every reason: a record."""

    class Source(models.TextChoices):
        API = "api", "API"
        GITHUB = "github", "GitHub protection rule"

    class Answer(models.TextChoices):
        ALLOWED = "allowed", "Allowed"
        WAITING = "waiting", "Waiting"
        REFUSED = "refused", "Refused"

    ANSWER_CSS = {"allowed": "state-ok", "waiting": "state-warn", "refused": "state-bad"}

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="gate_checks"
    )
    version = models.CharField(max_length=200)
    commit = models.CharField(max_length=64, blank=True)
    pipeline_url = models.URLField(max_length=500, blank=True)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.API)
    asked_by = models.CharField(max_length=300, help_text="The token and its owner, or GitHub.")
    token = models.ForeignKey(
        "opsconsole.ApiToken", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    answer = models.CharField(max_length=10, choices=Answer.choices, db_index=True)
    reasons = models.JSONField(default=list, blank=True, help_text='[{"code": …, "message": …}]')
    retry_after = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds.")
    approval = models.ForeignKey(
        DeployApproval, null=True, blank=True, on_delete=models.SET_NULL, related_name="gate_checks"
    )
    backup = models.ForeignKey(
        "backups.Backup",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The backup the gate started.",
    )
    at = models.DateTimeField(default=timezone.now, db_index=True)
    first_asked_at = models.DateTimeField(
        default=timezone.now, help_text="When this question was first asked (asked again: kept)."
    )
    answered_at = models.DateTimeField(null=True, blank=True)
    # A GitHub deployment protection rule: where and how the answer goes back.
    github_app = models.ForeignKey(
        "GitHubApp", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    github_repository = models.CharField(max_length=200, blank=True)
    github_environment = models.CharField(max_length=200, blank=True)
    github_installation = models.BigIntegerField(null=True, blank=True)
    github_deployment = models.BigIntegerField(null=True, blank=True)
    github_sender = models.CharField(
        max_length=100, blank=True, help_text="The GitHub user whose deployment it is."
    )
    github_callback_url = models.URLField(max_length=500, blank=True)
    github_state = models.CharField(
        max_length=10, blank=True, help_text="approved or rejected, once GitHub was told."
    )
    github_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-at"]
        verbose_name = "deploy gate check"

    def __str__(self) -> str:
        return f"{self.version} to {self.environment}: {self.answer}"

    @property
    def allowed(self) -> bool:
        return self.answer == self.Answer.ALLOWED

    def summary(self) -> str:
        if self.allowed:
            return f"{self.version} may deploy to {self.environment}."
        what = "waits" if self.answer == self.Answer.WAITING else "may not deploy"
        reasons = "; ".join(r["message"] for r in self.reasons)
        return f"{self.version} {what} to {self.environment}: {reasons}"


class GitHubApp(models.Model):
    """The console as a GitHub App: it answers deployment protection rules."""

    name = models.CharField(max_length=100, unique=True)
    app_id = models.CharField(
        max_length=64, help_text="The App's client ID (Iv23…) or App ID: the JWT's issuer."
    )
    private_key = EncryptedTextField(
        blank=True, default="", help_text="The App's private key (PEM), to sign its JWT."
    )
    webhook_secret = EncryptedTextField(
        blank=True, default="", help_text="The App's webhook secret (X-Hub-Signature-256)."
    )
    api_url = models.URLField(
        default="https://api.github.com",
        help_text="GitHub's API; GitHub Enterprise Server: https://HOST/api/v3.",
    )
    environments = models.JSONField(
        default=dict,
        blank=True,
        help_text="GitHub environment → console environment, where they differ, e.g. "
        '{"prod": "production"}.',
    )
    repositories = models.JSONField(
        default=list,
        blank=True,
        help_text='Repositories whose deployments it answers, e.g. ["acme/shorts"]; empty: '
        "every repository the App is installed on.",
    )
    people = models.JSONField(
        default=dict,
        blank=True,
        help_text='GitHub login → console username, where they differ, e.g. {"bob-gh": "bob"}: '
        "who deploys, for the two-person rule.",
    )

    class Meta:
        verbose_name = "GitHub App"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        key = reveal(self.private_key)
        if key:
            from cryptography.hazmat.primitives.asymmetric import rsa
            from cryptography.hazmat.primitives.serialization import load_pem_private_key

            try:
                loaded = load_pem_private_key(key.encode(), password=None)
            except (ValueError, TypeError):
                raise ValidationError(
                    {"private_key": "Not a PEM private key; paste the .pem file GitHub gave."}
                ) from None
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValidationError({"private_key": "GitHub App keys are RSA keys."})
        if not isinstance(self.environments, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.environments.items()
        ):
            raise ValidationError({"environments": 'A mapping like {"prod": "production"}.'})
        if not isinstance(self.people, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.people.items()
        ):
            raise ValidationError({"people": 'A mapping like {"bob-gh": "bob"}.'})
        if not isinstance(self.repositories, list) or not all(
            isinstance(r, str) and r.count("/") == 1 for r in self.repositories
        ):
            raise ValidationError({"repositories": 'A list like ["acme/shorts"].'})

    def answers_for(self, repository: str) -> bool:
        return not self.repositories or repository.lower() in {r.lower() for r in self.repositories}

    def console_user(self, login: str):
        """The console account of a GitHub login: mapped in `people`, else the same name."""
        from django.contrib.auth import get_user_model

        name = self.people.get(login, login)
        return get_user_model().objects.filter(username__iexact=name, is_active=True).first()

    def console_environment(self, github_name: str) -> Environment | None:
        return Environment.objects.filter(
            name=self.environments.get(github_name, github_name)
        ).first()
