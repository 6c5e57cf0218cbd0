"""The console's own records: worker heartbeats, the console-wide permissions, API
tokens and webhook receipts. The approval frame lives in `opsconsole.approvals`."""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
from datetime import timedelta

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
        ]

    def __str__(self) -> str:
        return "console permission"


class WorkerHeartbeat(models.Model):
    """The last time each django-q2 worker proved it can run a task."""

    worker = models.CharField(max_length=200, unique=True)
    seen_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.worker} at {self.seen_at:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def beat(cls, worker: str | None = None) -> None:
        name = worker or f"{socket.gethostname()}:{os.getpid()}"
        cls.objects.update_or_create(worker=name, defaults={"seen_at": timezone.now()})

    @classmethod
    def age(cls) -> timedelta | None:
        """How long ago any worker last beat, or None when none ever did."""
        latest = cls.objects.aggregate(latest=models.Max("seen_at"))["latest"]
        return None if latest is None else timezone.now() - latest

    @classmethod
    def prune(cls, older_than: timedelta = timedelta(days=1)) -> int:
        return cls.objects.filter(seen_at__lt=timezone.now() - older_than).delete()[0]


class ApiToken(models.Model):
    """A bearer token for the console's machine APIs (metrics push, rollback requests, the
    Alertmanager webhook, the system status).

    Only a SHA-256 of the token is stored; the token itself is shown once, when
    it is made. The prefix identifies it in lists without revealing it.
    """

    PREFIX_LENGTH = 8

    name = models.CharField(max_length=100, unique=True)
    prefix = models.CharField(max_length=PREFIX_LENGTH, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
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
    def issue(cls, name: str) -> tuple[ApiToken, str]:
        """Create a token; returns the row and the only copy of the secret."""

        token = "oc_" + secrets.token_urlsafe(32)
        row = cls.objects.create(
            name=name, prefix=token[: cls.PREFIX_LENGTH], token_hash=cls._hash(token)
        )
        return row, token

    @classmethod
    def authenticate(cls, authorization: str | None) -> ApiToken | None:
        """The live token named by an `Authorization: Bearer …` header, or None."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        row = cls.objects.filter(token_hash=cls._hash(token.strip()), revoked_at=None).first()
        if row is not None:
            cls.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
        return row

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

    @classmethod
    def prune(cls, older_than: timedelta = timedelta(hours=1)) -> int:
        return cls.objects.filter(received_at__lt=timezone.now() - older_than).delete()[0]
