"""Runbooks: ordered steps for a kind of failure, and executions that check them off."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.utils import timezone

from dr.models.failover import FailoverRun
from opsconsole import permissions


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

    @property
    def in_progress(self) -> bool:
        """An automated step still waiting for approval or running."""
        return any(r.run is not None and r.run.in_progress for r in self.records.all())

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
