"""The approval frame: request → approve → execute, the same for every kind.

The life of a request, enforced here and not in any page:

    requested ─approve()─▶ approved ─claim()─▶ running ─run()─▶ succeeded
        │                     ▲                   │
        ├─reject()/cancel()   │                   └─fail(message)─▶ failed
        │                     └─approve_automatically() (a policy decided)
        ▼
    rejected / cancelled

`approve()` queues `execute()` for a worker once the decision is committed:
no slow or dangerous work runs inside an approver's web request. A subclass
says who may request and approve, whether two people are needed, what the
approver types, and fills in the hooks `run()`, `on_started()`,
`on_succeeded()`, `on_failed()` and `interruption_message()`.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.utils import timezone

from opsconsole import leases, tracing
from opsconsole.tasks import enqueue
from opsconsole.timeline import TimelineEntry

log = logging.getLogger("opsconsole.approvals")

EXECUTE_TASK = "opsconsole.approvals.tasks.execute"


class ApprovalStatus(models.TextChoices):
    """The decision states; every kind keeps these names."""

    REQUESTED = "requested", "Requested"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


class RunStatus(models.TextChoices):
    """The whole life of a request that simply runs once approved."""

    REQUESTED = "requested", "Requested"
    APPROVED = "approved", "Approved"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    REJECTED = "rejected", "Rejected"
    CANCELLED = "cancelled", "Cancelled"


class ApprovalRequest(models.Model):
    """Request → approve → execute, with the two-person rule enforced here, not in the UI.

    A concrete subclass names its permissions, may widen `status` with its own
    running states (`RUNNING_STATES`, the first is what `claim()` moves to),
    and lists the exceptions of its `run()` that mean "failed, say why"
    (`FAILURES`). Anything else `run()` raises fails the request too, and is
    raised again so the task's error reaches Sentry.
    """

    REQUEST_PERMISSION: ClassVar[str]
    APPROVE_PERMISSION: ClassVar[str]
    RUNNING_STATES: ClassVar[tuple[str, ...]] = (RunStatus.RUNNING,)
    # What its name and its two-person rule read, fetched with it where many are listed.
    SHOWN_WITH: ClassVar[tuple[str, ...]] = ()
    FAILURES: ClassVar[tuple[type[Exception], ...]] = ()

    status = models.CharField(
        max_length=20,
        choices=RunStatus.choices,
        default=RunStatus.REQUESTED,
        db_index=True,
    )
    reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    requested_by_token = models.ForeignKey(
        "opsconsole.ApiToken",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="Filed through the API with this token (its owner is the requester).",
    )
    requested_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Renewed by the worker running it."
    )
    error = models.TextField(blank=True)

    class Meta:
        abstract = True

    @property
    def in_progress(self) -> bool:
        """Waiting for a decision, queued or running: its pages follow it until it ends."""
        return self.status in (RunStatus.REQUESTED, RunStatus.APPROVED, *self.RUNNING_STATES)

    @property
    def follow_every(self) -> int:
        """Seconds between looks: a decision may take hours, running work takes seconds."""
        return 10 if self.status == RunStatus.REQUESTED else 3

    # --- what a subclass decides ---------------------------------------------------
    def requires_two_people(self) -> bool:
        return True

    def confirmation_phrase(self) -> str:
        """What the approver types to confirm; subclasses return the environment/target name."""
        return str(self)

    def facts(self) -> list[tuple[str, str]]:
        """What is being decided, in words (label, text): shown on the request's page and
        on its approve page, so nobody approves what they cannot see."""
        return []

    def timeline(self) -> list[TimelineEntry]:
        """Its life as the request page shows it, oldest first: asked, decided, started,
        the kind's own steps (`steps()`), ended."""
        who = self.requested_by or (
            self.requested_by_token.created_by if self.requested_by_token_id else None
        )
        entries = [TimelineEntry(self.requested_at, "Requested", str(who or "the console"),
                                 self.reason)]  # fmt: skip
        if self.decided_at:
            decision = {
                ApprovalStatus.REJECTED: "Rejected", ApprovalStatus.CANCELLED: "Cancelled",
            }.get(self.status, "Approved")  # fmt: skip
            by = str(self.decided_by) if self.decided_by_id else "the policy"
            entries.append(TimelineEntry(self.decided_at, decision, by, self.decision_note))
        if self.started_at:
            entries.append(TimelineEntry(self.started_at, "Started", "a worker", ""))
        entries += self.steps()
        if self.finished_at:
            ended = "Failed" if self.status == RunStatus.FAILED else "Succeeded"
            entries.append(TimelineEntry(self.finished_at, ended, "", self.error))
        return sorted(entries, key=lambda e: e.at)

    def steps(self) -> list[TimelineEntry]:
        """What the kind records while it runs (a rollback's verification checks)."""
        return []

    def run(self) -> dict[str, Any] | None:
        """Do the work, on a worker. Return the fields to record with success."""
        raise TypeError(f"{type(self).__name__} must define run()")

    def on_started(self) -> None:
        """After the claim, before `run()`: announce what is about to happen."""

    def on_succeeded(self) -> None:
        """After success is recorded: resolve what it repairs, mark what it replaced."""

    def on_failed(self, message: str) -> None:
        """After failure is recorded: raise it through the incident door."""

    def interruption_message(self) -> str:
        """What is recorded when the worker died mid-run: what to check by hand."""
        return (
            "the worker running it stopped (its lease ran out); marked failed. Check the "
            "worker's log for a crash or an out-of-memory kill, and what this left half done."
        )

    def abandon(self, message: str) -> bool:
        """approved → failed, for an approved request that never started (its task was lost
        long ago): recorded and raised like any failure."""
        updated = (
            type(self)
            ._default_manager.filter(pk=self.pk, status=ApprovalStatus.APPROVED)
            .update(status=RunStatus.FAILED, finished_at=timezone.now(), error=message[:4000])
        )
        self.refresh_from_db()
        if updated:
            self.on_failed(message)
        return bool(updated)

    def on_lease_expired(self) -> bool:
        """The worker died mid-run (`opsconsole.reconcile`). Never re-run: half a gradual
        rollback may be serving, half a replace may have renamed databases."""
        return self.fail(self.interruption_message())

    # --- deciding ------------------------------------------------------------------------
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
        """Approve after the typed confirmation, and queue the execution on a worker.

        Raises PermissionDenied or ValidationError.
        """
        self._decide(user, ApprovalStatus.APPROVED, confirmation=confirmation, note=note)
        self.enqueue()

    def approve_automatically(self, note: str) -> None:
        """A policy approved it (automatic rollback, an automatic action): nobody decided."""
        self._transition(None, ApprovalStatus.APPROVED, note=note)
        self.enqueue()

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

    # --- executing -----------------------------------------------------------------------
    def enqueue(self) -> None:
        """Queue `execute()` once the approval is committed (a rolled-back one queues nothing)."""
        label, pk = self._meta.label, self.pk
        transaction.on_commit(lambda: enqueue(EXECUTE_TASK, label, pk))

    def claim(self) -> bool:
        """approved → running, once: a re-delivered task or a second worker gets False."""
        claimed = (
            type(self)
            ._default_manager.filter(pk=self.pk, status=ApprovalStatus.APPROVED)
            .update(
                status=self.RUNNING_STATES[0],
                started_at=timezone.now(),
                lease_expires_at=leases.expiry(),
            )
        )
        self.refresh_from_db()
        return claimed == 1

    def advance(self, status: str, **fields: Any) -> None:
        """Move between running states (executing → verifying), recording `fields`."""
        type(self)._default_manager.filter(pk=self.pk, status__in=self.RUNNING_STATES).update(
            status=status, **fields
        )
        self.refresh_from_db()

    def execute(self) -> ApprovalRequest:
        """Run an approved request on this worker. Idempotent: done or taken → nothing."""
        with tracing.span(
            f"run {self._meta.model_name}",
            {"opsconsole.request": self._meta.label, "opsconsole.request.id": self.pk},
        ) as current:
            self._execute()
            current.set_attribute("opsconsole.outcome", self.status)
            if self.status == RunStatus.FAILED:
                current.set_status(tracing.Status(tracing.StatusCode.ERROR, self.error[:200]))
        return self

    def _execute(self) -> None:
        # The claim is the preflight every kind shares: still approved, nobody else on it.
        with tracing.span("approval.claim") as current:
            claimed = self.claim()
            current.set_attribute("opsconsole.claimed", claimed)
        if not claimed:
            return
        lease = None
        try:
            with leases.held(self) as lease:
                self.on_started()
                fields = self.run() or {}
        except leases.LeaseLost:
            # The reconciler took it over (this worker was cut off for a lease): its
            # verdict stands; nothing more is done here.
            log.warning("%s: lease lost; stopped", self)
        except self.FAILURES as exc:
            self.fail(getattr(exc, "message", None) or str(exc), lease=lease)
        except Exception as exc:
            # A bug must not leave the request "running" until its lease runs out.
            self.fail(f"{type(exc).__name__}: {exc}", lease=lease)
            raise
        else:
            self.succeed(lease=lease, **fields)
        self.refresh_from_db()

    def _running(self, lease: leases.Lease | None) -> models.QuerySet:
        """This request while still running, and still this worker's when `lease` is given
        (the reconciler swaps the lease when it takes a request over)."""
        rows = type(self)._default_manager.filter(pk=self.pk, status__in=self.RUNNING_STATES)
        return rows if lease is None else rows.filter(lease_expires_at=lease.value)

    def succeed(self, lease: leases.Lease | None = None, **fields: Any) -> None:
        updated = self._running(lease).update(
            status=RunStatus.SUCCEEDED, finished_at=timezone.now(), **fields
        )
        self.refresh_from_db()
        if updated:
            self.on_succeeded()

    def fail(self, message: str, lease: leases.Lease | None = None) -> bool:
        """Record the failure once (a second call changes nothing) and raise it."""
        updated = self._running(lease).update(
            status=RunStatus.FAILED, finished_at=timezone.now(), error=message[:4000]
        )
        self.refresh_from_db()
        if updated:
            log.warning("%s failed: %s", self, message)
            self.on_failed(message)
        return bool(updated)
