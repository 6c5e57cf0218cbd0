"""What is waiting for the person looking: the "Needs you" panel and the sidebar's counts.

- Requests of every kind on the approval frame (rollbacks, restores, failovers,
  variable syncs, deploy approvals, guarded-setting changes) that this person may
  decide now: the model's own `approval_refusal()` says so, two-person rule included.
- Incidents nobody has acknowledged, for people who may acknowledge them, and the
  open ones they acknowledged themselves.
- Runbook executions they started and have not finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from django.urls import reverse

from opsconsole import permissions
from opsconsole.approvals.models import ApprovalStatus
from opsconsole.approvals.tasks import approval_models

# Enough to act on; a longer queue is one click away in its list. Up to LOOK_AT waiting
# requests of a kind are weighed, so a person's own requests never hide the ones they
# may decide.
PER_KIND = 20
LOOK_AT = 200


@dataclass
class Need:
    kind: str
    title: str
    url: str
    since: datetime
    by: str = ""
    actions: list[tuple[str, str, str]] = field(default_factory=list)  # (label, url, method)
    model: str = ""  # "app_label.model_name", for the sidebar's counts


def _admin_url(obj, view: str) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_{view}", args=[obj.pk])


def needs_of(user) -> list[Need]:
    """Everything waiting for `user`, oldest first within each kind, approvals first."""
    needs: list[Need] = []
    for model in approval_models():
        if not user.has_perm(model.APPROVE_PERMISSION):
            continue
        waiting = model._default_manager.filter(status=ApprovalStatus.REQUESTED)
        related = ("requested_by", *model.SHOWN_WITH)
        found = 0
        for request in waiting.select_related(*related).order_by("requested_at")[:LOOK_AT]:
            if found == PER_KIND:
                break
            if not request.can_approve(user):
                continue
            found += 1
            needs.append(
                Need(
                    kind=f"Approve {model._meta.verbose_name}",
                    title=str(request),
                    url=_admin_url(request, "change"),
                    since=request.requested_at,
                    by=str(request.requested_by or "the system"),
                    actions=[
                        ("Approve…", _admin_url(request, "approve"), "get"),
                        ("Reject…", _admin_url(request, "reject"), "get"),
                    ],
                    model=model._meta.label_lower,
                )
            )
    if user.has_perm(permissions.ACKNOWLEDGE_INCIDENT):
        needs += _incidents(user)
    needs += _runbooks(user)
    return needs


def _incidents(user) -> list[Need]:
    from alerts.models import Incident

    open_ = Incident.objects.exclude(status=Incident.Status.RESOLVED)
    rows = list(open_.filter(status=Incident.Status.TRIGGERED).order_by("opened_at")[:PER_KIND])
    rows += open_.filter(status=Incident.Status.ACKNOWLEDGED, acknowledged_by=user).order_by(
        "opened_at"
    )[:PER_KIND]
    needs = []
    for incident in rows:
        triggered = incident.status == Incident.Status.TRIGGERED
        needs.append(
            Need(
                kind="Acknowledge incident" if triggered else "Your incident, still open",
                title=f"#{incident.pk} {incident.title}",
                url=_admin_url(incident, "change"),
                since=incident.opened_at,
                by=incident.get_priority_display(),
                actions=[("Acknowledge", _admin_url(incident, "acknowledge"), "post")]
                if triggered
                else [],
                model="alerts.incident",
            )
        )
    return needs


def _runbooks(user) -> list[Need]:
    from dr.models import RunbookExecution

    started = RunbookExecution.objects.filter(started_by=user, finished_at__isnull=True)
    return [
        Need(
            kind="Finish your runbook",
            title=str(execution.runbook),
            url=_admin_url(execution, "change"),
            since=execution.started_at,
            model="dr.runbookexecution",
        )
        for execution in started.select_related("runbook")[:PER_KIND]
    ]


def for_request(request) -> list[Need]:
    """`needs_of(request.user)`, worked out once per request (the dashboard's panel and
    the sidebar's counts share it)."""
    if not hasattr(request, "_opsconsole_needs"):
        request._opsconsole_needs = needs_of(request.user)
    return request._opsconsole_needs


def counts(request) -> dict[str, int]:
    """How many needs per model, for the sidebar."""
    result: dict[str, int] = {}
    for need in for_request(request):
        result[need.model] = result.get(need.model, 0) + 1
    return result
