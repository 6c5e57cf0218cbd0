"""The console's own records: worker heartbeats, the role permissions, and the
request → approve → execute frame that restores, rollbacks and failovers share."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import ClassVar

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
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


class ApprovalStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


class RunStatus(models.TextChoices):
    """For requests that, once approved, simply run: a sync, a failover action."""

    REQUESTED = "requested", "Requested"
    APPROVED = "approved", "Approved"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


class ApprovalRequest(models.Model):
    """Request → approve → execute, with the two-person rule enforced here, not in the UI.

    A concrete subclass names its permissions, says whether two people are
    required (production environments) and what the approver must type to
    confirm (the environment or database name). It may widen `status` with its
    own execution states; the decision states below keep their names.
    """

    REQUEST_PERMISSION: ClassVar[str]
    APPROVE_PERMISSION: ClassVar[str]

    status = models.CharField(
        max_length=20,
        choices=ApprovalStatus.choices,
        default=ApprovalStatus.REQUESTED,
        db_index=True,
    )
    reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)

    class Meta:
        abstract = True

    # --- what a subclass decides -------------------------------------------
    def requires_two_people(self) -> bool:
        return True

    def confirmation_phrase(self) -> str:
        """What the approver types to confirm; subclasses return the environment/database name."""
        return str(self)

    # --- the rules ------------------------------------------------------------
    @classmethod
    def check_can_request(cls, user) -> None:
        if not user.has_perm(cls.REQUEST_PERMISSION):
            raise PermissionDenied(
                f"{user} may not request this ({cls.REQUEST_PERMISSION} missing)"
            )

    def approval_refusal(self, user) -> str | None:
        """Why `user` may not approve this now, or None when they may."""
        if self.status != ApprovalStatus.REQUESTED:
            return f"it is {self.get_status_display().lower()}, not awaiting approval"
        if not user.has_perm(self.APPROVE_PERMISSION):
            return "you do not have the approver role"
        if self.requires_two_people() and self.requested_by_id == user.pk:
            return "the two-person rule requires someone other than the requester to approve"
        return None

    def can_approve(self, user) -> bool:
        return self.approval_refusal(user) is None

    def approve(self, user, *, confirmation: str, note: str = "") -> None:
        """Approve, after the typed confirmation; raise PermissionDenied or ValidationError."""
        self._decide(user, ApprovalStatus.APPROVED, confirmation=confirmation, note=note)

    def reject(self, user, *, note: str = "") -> None:
        self._decide(user, ApprovalStatus.REJECTED, confirmation=None, note=note)

    def cancel(self, user) -> None:
        """The requester (or an approver) withdraws a request that nobody decided yet."""
        if user.pk != self.requested_by_id and not user.has_perm(self.APPROVE_PERMISSION):
            raise PermissionDenied("only the requester or an approver can cancel this request")
        self._transition(user, ApprovalStatus.CANCELLED, note="")

    def _decide(self, user, status: str, *, confirmation: str | None, note: str) -> None:
        refusal = self.approval_refusal(user)
        if refusal and self.status == ApprovalStatus.REQUESTED:
            raise PermissionDenied(f"You cannot decide this request: {refusal}.")
        if refusal:
            raise ValidationError(f"This request cannot be decided: {refusal}.")
        if confirmation is not None and confirmation.strip() != self.confirmation_phrase():
            raise ValidationError(
                f"Type {self.confirmation_phrase()!r} exactly to confirm.", code="confirmation"
            )
        self._transition(user, status, note=note)

    def _transition(self, user, status: str, *, note: str) -> None:
        now = timezone.now()
        # A conditional update: two approvers clicking at once cannot both win.
        claimed = (
            type(self)
            ._default_manager.filter(pk=self.pk, status=ApprovalStatus.REQUESTED)
            .update(status=status, decided_by=user, decided_at=now, decision_note=note)
        )
        if claimed != 1:
            self.refresh_from_db(fields=["status"])
            raise ValidationError(
                f"This request is already {self.get_status_display().lower()}.", code="stale"
            )
        self.status, self.decided_by, self.decided_at, self.decision_note = status, user, now, note


class ApiToken(models.Model):
    """A bearer token for the console's machine APIs (metrics push, rollback requests).

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
        import hashlib

        return hashlib.sha256(token.encode()).hexdigest()

    @classmethod
    def issue(cls, name: str) -> tuple[ApiToken, str]:
        """Create a token; returns the row and the only copy of the secret."""
        import secrets

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
        import hashlib

        from django.db import IntegrityError, transaction

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
