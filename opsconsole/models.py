"""The console's own records: worker heartbeats, the console-wide permissions, API
tokens and webhook receipts. The approval frame lives in `opsconsole.approvals`."""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone


class ConsolePermission(models.Model):
    """Holds the console-wide permissions that no single model owns (no table).

    Apps check them as `opsconsole.<codename>`; the roles in `opsconsole.roles`
    hand them out.
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("run_jobs", "Can run backups, checks and drills on demand"),
            ("acknowledge_incident", "Can acknowledge incidents"),
            ("work_runbooks", "Can work through runbooks (and request their actions)"),
            ("request_rollback", "Can request a rollback"),
            ("approve_rollback", "Can approve a rollback"),
            ("request_restore", "Can request a database restore"),
            ("approve_restore", "Can approve a database restore"),
            ("request_failover", "Can request a failover action"),
            ("approve_failover", "Can approve a failover action"),
            ("approve_setting_change", "Can approve a change to a guarded setting"),
            ("request_deploy", "Can ask for a deploy approval (the deploy gate)"),
            ("approve_deploy", "Can approve a deploy where the environment needs one"),
        ]

    def __str__(self) -> str:
        return "console permission"


class WorkerHeartbeat(models.Model):
    """The last time each process of the console proved it works, by role.

    "jobs" is a django-q2 worker (the heartbeat schedule when it is idle, lease
    renewals while it runs long work); "alerts" is the alert path (its own loop).
    """

    class Role(models.TextChoices):
        JOBS = "jobs", "Jobs worker"
        ALERTS = "alerts", "Alert path"

    worker = models.CharField(max_length=200, unique=True)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.JOBS, db_index=True)
    seen_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.worker} at {self.seen_at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def beat(cls, worker: str | None = None, role: str = Role.JOBS) -> None:
        name = worker or f"{role}@{socket.gethostname()}:{os.getpid()}"
        cls.objects.update_or_create(
            worker=name, defaults={"seen_at": timezone.now(), "role": role}
        )

    @classmethod
    def age(cls, role: str = Role.JOBS) -> timedelta | None:
        """How long ago any process of `role` last beat, or None when none ever did."""
        latest = cls.objects.filter(role=role).aggregate(latest=models.Max("seen_at"))["latest"]
        return None if latest is None else timezone.now() - latest

    @classmethod
    def prune(cls, older_than: timedelta = timedelta(days=1)) -> int:
        return cls.objects.filter(seen_at__lt=timezone.now() - older_than).delete()[0]


class LoopTick(models.Model):
    """The last run of each loop of the alert path: what /metrics, the readiness check and
    the dead-man's switch read to tell whether alerting is on time."""

    name = models.CharField(max_length=100, unique=True)
    every_seconds = models.FloatField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(db_index=True)
    duration_ms = models.FloatField(default=0)
    lag_ms = models.FloatField(default=0, help_text="How late the newest tick started.")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def overdue(self, now=None) -> timedelta:
        """How far past its cadence the loop is (zero when on time). A loop that ticks
        every second and takes a while is not overdue until it misses by a margin."""
        late = (now or timezone.now()) - self.finished_at - timedelta(seconds=self.every_seconds)
        return max(late, timedelta(0))


class ApiToken(models.Model):
    """A bearer token for the console's machine APIs, limited to its scopes.

    Only a SHA-256 of the token is stored; the token itself is shown once, when
    it is made. The prefix identifies it in lists without revealing it. A token
    belongs to the person who made it: what it files (a rollback request) is
    theirs, and the two-person rule then keeps them from approving it.
    """

    PREFIX_LENGTH = 8
    # What a token may be allowed to do, by the API it opens.
    SCOPES = {
        "metrics:write": "push metric samples (POST /api/metrics)",
        "alerts:write": "deliver Alertmanager alerts (POST /webhooks/alertmanager)",
        "rollback:request": "file rollback requests (POST /api/rollback)",
        "status:read": "read the system status (GET /api/system/status)",
        "metrics:read": "scrape the console's own metrics (GET /metrics)",
        "deploy:check": "ask the deploy gate whether a deploy may go out (POST /api/deploys/check)",
    }

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=PREFIX_LENGTH, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    scopes = models.JSONField(default=list, help_text="What the token may do.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Who is answerable for it; requests it files are theirs.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @staticmethod
    def _hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(
        cls,
        name: str,
        *,
        scopes: list[str],
        created_by=None,
        expires_at=None,
    ) -> tuple[ApiToken, str]:
        """Create a token; returns the row and the only copy of the secret."""
        unknown = sorted(set(scopes) - set(cls.SCOPES))
        if unknown or not scopes:
            raise ValueError(
                f"unknown scope(s): {', '.join(unknown)}; choose from {', '.join(cls.SCOPES)}"
                if unknown
                else f"a token needs at least one scope: {', '.join(cls.SCOPES)}"
            )
        token = "oc_" + secrets.token_urlsafe(32)
        row = cls.objects.create(
            name=name,
            prefix=token[: cls.PREFIX_LENGTH],
            token_hash=cls._hash(token),
            scopes=sorted(set(scopes)),
            created_by=created_by,
            expires_at=expires_at,
        )
        return row, token

    @classmethod
    def authenticate(cls, authorization: str | None) -> ApiToken | None:
        """The live (not revoked, not expired) token of an `Authorization: Bearer …`, or None."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        now = timezone.now()
        row = (
            cls.objects.filter(token_hash=cls._hash(token.strip()), revoked_at=None)
            .exclude(expires_at__lte=now)
            .select_related("created_by")
            .first()
        )
        if row is not None:
            cls.objects.filter(pk=row.pk).update(last_used_at=now)
        return row

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            type(self).objects.filter(pk=self.pk).update(revoked_at=self.revoked_at)


class WebhookReceipt(models.Model):
    """Signatures of webhooks already accepted: a replayed request is refused.

    Kept a little longer than the accepted clock skew, then pruned.
    """

    source = models.CharField(max_length=50)
    signature_hash = models.CharField(max_length=64)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "signature_hash"], name="webhook_receipt_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.signature_hash[:12]}"

    @classmethod
    def first_time(cls, source: str, signature: str) -> bool:
        """Record a signature; False when it was seen before (a replay)."""
        digest = hashlib.sha256(signature.encode()).hexdigest()
        try:
            with transaction.atomic():
                cls.objects.create(source=source, signature_hash=digest)
        except IntegrityError:
            return False
        return True

    # Kept longer than any accepted request can be old (webhooks: 5 minutes; a Sentry
    # event: a day), so a replay is refused for as long as it could be accepted.
    KEEP = timedelta(days=2)

    @classmethod
    def prune(cls, older_than: timedelta = KEEP) -> int:
        return cls.objects.filter(received_at__lt=timezone.now() - older_than).delete()[0]


# The approval frame imports this module (through opsconsole.tasks): imported last, once
# the models above exist, so the frame's one concrete model here is registered too.
from opsconsole.approvals.changes import SettingChange  # noqa: E402

__all__ = [
    "ApiToken",
    "ConsolePermission",
    "LoopTick",
    "SettingChange",
    "WebhookReceipt",
    "WorkerHeartbeat",
]
