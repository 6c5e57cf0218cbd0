"""Failover actions (prepared steps for a bad day) and their runs, each an approval request."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models

from alerts.incidents import raise_incident
from dr.failover import ACTION_KINDS as FAILOVER_KINDS
from dr.failover import FailoverError
from opsconsole import permissions
from opsconsole.approvals.models import ApprovalRequest, RunStatus
from opsconsole.fields import EncryptedTextField, reveal


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
                    self.config or {}, reveal(self.secret)
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
    SHOWN_WITH = ("action",)
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
