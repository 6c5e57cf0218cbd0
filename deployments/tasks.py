"""What django-q2 runs for deployments. Thin: intake and the watch hold the work.

(Rollbacks run through the approval frame's one task, `opsconsole.approvals.tasks`.)
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from django.utils import timezone

from deployments import gate, intake
from deployments.models import Deployment, Environment, GateCheck
from deployments.providers import ProviderError
from opsconsole.tasks import console_task, enqueue

log = logging.getLogger("opsconsole.deployments")


@console_task
def process_deployment(deployment_id: int) -> str:
    deployment = Deployment.objects.get(pk=deployment_id)
    intake.process(deployment)
    deployment.refresh_from_db()
    return deployment.status


@console_task
def answer_github(check_id: int) -> str:
    """Tell GitHub the deploy gate's answer; the error stays on the check for the admin."""
    from deployments import github

    check = GateCheck.objects.select_related("github_app", "environment").get(pk=check_id)
    try:
        github.answer(check)
    except github.GitHubError as exc:
        GateCheck.objects.filter(pk=check.pk).update(github_error=exc.message[:2000])
        raise
    return check.answer


@console_task
def recheck_gate(check_id: int) -> str | None:
    """A waiting GitHub check asks again (an approval was decided, a backup finished);
    a decided answer goes back to GitHub."""
    check = GateCheck.objects.select_related("github_app", "token").get(pk=check_id)
    again = gate.recheck(check)
    if again is None:  # already answered, or another worker took it
        return None
    if again.source == GateCheck.Source.GITHUB and again.answer != GateCheck.Answer.WAITING:
        answer_github(again.pk)
    return again.answer


@console_task
def recheck_waiting_gates() -> int:
    """Every minute: GitHub cannot poll, so waiting protection rules are asked again here
    once their retry time has passed (GitHub waits up to 30 days for an answer), and
    answers that never reached GitHub are sent again."""
    now = timezone.now()
    waiting = GateCheck.objects.filter(
        source=GateCheck.Source.GITHUB,
        answer=GateCheck.Answer.WAITING,
        answered_at=None,
        first_asked_at__gt=now - timedelta(days=30),
    )
    # A wait for an approval alone is answered by the decision (DeployApproval's hook),
    # not by asking the provider again every minute.
    due = [
        c.pk
        for c in waiting
        if c.at + timedelta(seconds=c.retry_after or 60) <= now
        and {r["code"] for r in c.reasons} != {"approval_pending"}
    ]
    for pk in due:
        enqueue("deployments.tasks.recheck_gate", pk)
    # A decided answer GitHub never got (the worker died before sending it, or GitHub's
    # API failed): sent again each minute for a day.
    unsent = GateCheck.objects.filter(
        source=GateCheck.Source.GITHUB, github_state="", at__gt=now - timedelta(days=1),
        at__lt=now - timedelta(minutes=1),
    ).exclude(answer=GateCheck.Answer.WAITING)  # fmt: skip
    for pk in unsent.values_list("pk", flat=True):
        enqueue("deployments.tasks.answer_github", pk)
    return len(due) + len(unsent)


@console_task
def check_variable_drift() -> dict[str, str]:
    """Compare each environment's variables on the provider with what the console last
    set or saw there; names only."""
    results = {}
    for env in Environment.objects.all():
        try:
            found = env.check_drift()
        except ProviderError as exc:
            results[env.name] = f"cannot list: {exc.message}"
            continue
        results[env.name] = "not listable" if found is None else (found.describe() or "no drift")
    return results


# One round must end before the next minute's: environments left over wait for it.
OBSERVE_BUDGET_SECONDS = 45


@console_task
def observe_live_versions() -> dict[str, str]:
    """Ask each environment's provider what is live, so pages show it without waiting on
    a provider; those that cannot say are left to the records. One provider's trouble
    is that environment's answer, never the others'."""
    started, results = time.monotonic(), {}
    for env in Environment.objects.order_by("observed_at"):  # the longest unasked first
        if time.monotonic() - started > OBSERVE_BUDGET_SECONDS:
            results[env.name] = "not asked this round"
            continue
        try:
            results[env.name] = env.observe() or "cannot say"
        except Exception as exc:
            log.warning("could not ask %s what is live: %s", env, type(exc).__name__)
            results[env.name] = f"failed: {type(exc).__name__}"
    return results
