"""The deploy gate: may this version go out to this environment now, and if not, why.

One set of findings serves two moments. Before a deploy, a pipeline asks the gate
(`POST /api/deploys/check`, or GitHub through a deployment protection rule) and
gets `allowed`, `waiting` (an approval or a backup under way: ask again) or
`refused`, with every reason in words and a code. As a deploy is reported,
preflight records the same findings as the deployment's checks.

Every question is a `GateCheck` record: who asked, the answer, and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from alerts.models import Incident, Silence
from alerts.notify import absolute
from backups.models import Backup, StorageLocation
from deployments.models import (
    DeployApproval,
    Deployment,
    Environment,
    GateCheck,
    RollbackRequest,
)
from deployments.providers import ProviderError
from opsconsole import tracing
from opsconsole.tasks import enqueue

BLOCKING_PRIORITIES = ("critical", "high")
# When no backup of the target finished before, how long a new one is expected to take.
FIRST_BACKUP_GUESS_SECONDS = 60


@dataclass
class Finding:
    """One thing checked. `code` names it when it fails; `waiting` means the answer
    changes by itself (a backup is being taken, an approval is asked for)."""

    name: str
    code: str
    passed: bool
    detail: str
    waiting: bool = False
    retry_after: int | None = None
    backup: Backup | None = None
    approval: DeployApproval | None = None


def findings(
    env: Environment, *, deployment: Deployment | None = None, start_backup: bool = False
) -> list[Finding]:
    """What preflight and the gate both check: variables, nothing else in progress, a
    recent backup (taking one when asked), no deploy freeze."""
    found = variable_findings(env)
    found.append(in_progress_finding(env, deployment))
    if env.backup_target_id:
        found.append(backup_finding(env, start=start_backup))
    found.append(freeze_finding())
    return found


def variable_findings(env: Environment) -> list[Finding]:
    required, rules = env.required_names(), env.variable_rules()
    baseline = bool(env.provider_digests)
    if not (required or rules or baseline):
        return []
    try:
        live = env.backend.variables()
    except ProviderError as exc:
        return [
            Finding(
                "required variables",
                "variables_unknown",
                False,
                f"cannot list the provider's variables: {exc.message}",
            )
        ]
    if live is None:
        return [
            Finding(
                "required variables",
                "variables_unknown",
                True,
                "the provider cannot list variables; not checked",
            )
        ]
    report = env.variable_report(live)
    found = []
    if required:
        missing = report["missing"]
        found.append(
            Finding(
                "required variables",
                "variables_missing",
                not missing,
                f"missing on the provider: {', '.join(missing)}" if missing else "all set",
            )
        )
    if rules:
        invalid = report["invalid"]
        found.append(
            Finding(
                "variable values",
                "variables_invalid",
                not invalid,
                "; ".join(invalid.values()) if invalid else "every value has the expected form",
            )
        )
    drift = report["drift"]
    if drift is not None:
        found.append(
            Finding(
                "variables drift",
                "variables_drift",
                not drift,
                f"changed on the provider behind the console's back: {drift.describe()}"
                if drift
                else "as the console last set or saw them",
            )
        )
    return found


def in_progress_finding(env: Environment, deployment: Deployment | None) -> Finding:
    busy = env.deployments.filter(status__in=Deployment.ACTIVE)
    if deployment is not None:
        busy = busy.exclude(pk=deployment.pk)
    other = busy.order_by("-received_at").first()
    rolling = RollbackRequest.objects.filter(
        environment=env, status__in=RollbackRequest.ACTIVE
    ).first()
    if other:
        detail = f"another deploy is in progress: {other.version} ({other.get_status_display()})"
    elif rolling:
        detail = f"a rollback is in progress ({rolling.get_status_display().lower()})"
    else:
        detail = "clear"
    return Finding("nothing else in progress", "deploy_in_progress", not (other or rolling), detail)


def backup_finding(env: Environment, *, start: bool) -> Finding:
    target = env.backup_target
    newest = target.newest_good_backup()
    age = timezone.now() - newest.created_at if newest else None
    if age is not None and age <= timedelta(hours=env.backup_max_age_hours):
        return Finding(
            "recent backup",
            "backup_too_old",
            True,
            f"{newest.id}, {age.total_seconds() / 3600:.1f} h old",
        )
    what = (
        f"the newest good backup of {target} is {age.total_seconds() / 3600:.0f} h old "
        f"(limit {env.backup_max_age_hours} h)"
        if age
        else f"no good backup of {target} yet"
    )
    under_way = target.backups.filter(status__in=(Backup.Status.QUEUED, Backup.Status.RUNNING))
    backup = under_way.order_by("-created_at").first()
    if backup is None and start:
        backup = Backup.objects.create(
            target=target, storage=StorageLocation.default(), trigger=Backup.Trigger.PRE_DEPLOY
        )
        transaction.on_commit(lambda: enqueue("backups.tasks.run_backup", backup.pk))
        what += f"; taking one now: {backup.id}"
    elif backup is not None:
        what += f"; {backup.id} is {backup.get_status_display().lower()}"
    if backup is None:
        return Finding("recent backup", "backup_too_old", False, what)
    return Finding(
        "recent backup",
        "backup_too_old",
        False,
        what,
        waiting=True,
        retry_after=expected_backup_seconds(target, backup),
        backup=backup,
    )


def expected_backup_seconds(target, backup: Backup) -> int:
    """How long until `backup` is likely done: the last one's duration, less what ran."""
    last = (
        target.backups.filter(
            status__in=Backup.GOOD, started_at__isnull=False, finished_at__isnull=False
        )
        .order_by("-created_at")
        .first()
    )
    took = (
        (last.finished_at - last.started_at).total_seconds() if last else FIRST_BACKUP_GUESS_SECONDS
    )
    ran = (timezone.now() - backup.started_at).total_seconds() if backup.started_at else 0
    return max(10, math.ceil(took - ran) + 5)


def freeze_finding() -> Finding:
    now = timezone.now()
    freeze = Silence.objects.filter(
        freeze_deploys=True, starts_at__lte=now, ends_at__gt=now
    ).first()
    if freeze is None:
        return Finding("no deploy freeze", "deploy_freeze", True, "no freeze window")
    return Finding(
        "no deploy freeze",
        "deploy_freeze",
        False,
        f"a deploy freeze is on until {freeze.ends_at:%Y-%m-%d %H:%M} UTC: {freeze.reason}",
    )


def incident_finding(env: Environment) -> Finding:
    components = [env.name, *(env.components or [])]
    open_incidents = Incident.objects.filter(
        ~Q(status=Incident.Status.RESOLVED),
        priority__in=BLOCKING_PRIORITIES,
        component__in=components,
    ).order_by("opened_at")
    first = open_incidents.first()
    if first is None:
        return Finding(
            "no open incident",
            "open_incident",
            True,
            f"no critical or high incident open on {', '.join(components)}",
        )
    count = open_incidents.count()
    more = f" and {count - 1} more" if count > 1 else ""
    return Finding(
        "no open incident",
        "open_incident",
        False,
        f"{first.priority} incident open on {first.component}: {first.title}{more}",
    )


def approval_finding(
    env: Environment, version: str, commit: str, pipeline_url: str, *, requested_by, token
) -> Finding:
    """Where the environment asks for one: the approval of this version (filed now when
    nobody asked yet)."""
    approvals = env.deploy_approvals.filter(version=version, commit=commit).exclude(
        status__in=(DeployApproval.Status.CANCELLED, DeployApproval.Status.FAILED)
    )
    approval = approvals.order_by("-requested_at").first()
    if approval is not None and approval.used():
        approval = None  # it let one deploy through; the next one is asked for again
    if approval is None:
        if requested_by is not None and not requested_by.has_perm(
            DeployApproval.REQUEST_PERMISSION
        ):
            return Finding(
                "approval",
                "approval_required",
                False,
                f"{env} needs an approval, and the token's owner may not ask for "
                f"one ({DeployApproval.REQUEST_PERMISSION})",
            )
        approval = DeployApproval.objects.create(
            environment=env,
            version=version,
            commit=commit,
            pipeline_url=pipeline_url,
            requested_by=requested_by,
            requested_by_token=token,
            reason=f"the deploy gate asks before {version} goes out to {env}",
        )
    link = absolute(reverse("admin:deployments_deployapproval_change", args=[approval.pk]))
    if approval.status in DeployApproval.GRANTED:
        who = approval.decided_by or "policy"
        return Finding(
            "approval", "approval_required", True, f"approved by {who}", approval=approval
        )
    if approval.status == DeployApproval.Status.REJECTED:
        note = f": {approval.decision_note}" if approval.decision_note else ""
        return Finding(
            "approval",
            "approval_rejected",
            False,
            f"rejected by {approval.decided_by}{note}",
            approval=approval,
        )
    two = " (by someone other than the requester)" if approval.requires_two_people() else ""
    return Finding(
        "approval",
        "approval_pending",
        False,
        f"waiting for approval{two}: {link}",
        waiting=True,
        retry_after=30,
        approval=approval,
    )


def ask(
    env: Environment,
    *,
    version: str,
    commit: str = "",
    pipeline_url: str = "",
    asked_by: str,
    user=None,
    token=None,
    start_backup: bool = False,
    source: str = GateCheck.Source.API,
    **github,
) -> GateCheck:
    """Ask the gate; the answer is recorded and returned."""
    with tracing.span(
        "deploy.gate", {"opsconsole.environment": env.name, "opsconsole.version": version}
    ) as current:
        with transaction.atomic():
            check = _ask(
                env,
                version,
                commit,
                pipeline_url,
                asked_by,
                user,
                token,
                start_backup or env.backup_before_deploy,
                source,
                github,
            )
        current.set_attribute("opsconsole.outcome", check.answer)
        return check


def _ask(env, version, commit, pipeline_url, asked_by, user, token, start_backup, source, github):
    found = findings(env, start_backup=start_backup)
    found.append(incident_finding(env))
    if env.require_deploy_approval:
        found.append(
            approval_finding(env, version, commit, pipeline_url, requested_by=user, token=token)
        )
    failed = [f for f in found if not f.passed]
    if not failed:
        answer = GateCheck.Answer.ALLOWED
    elif all(f.waiting for f in failed):
        answer = GateCheck.Answer.WAITING
    else:
        answer = GateCheck.Answer.REFUSED
    retry = [f.retry_after for f in failed if f.retry_after]
    return GateCheck.objects.create(
        environment=env,
        version=version,
        commit=commit,
        pipeline_url=pipeline_url,
        source=source,
        asked_by=asked_by[:300],
        token=token,
        answer=answer,
        reasons=[{"code": f.code, "message": f.detail} for f in failed],
        retry_after=max(retry) if answer == GateCheck.Answer.WAITING and retry else None,
        approval=next((f.approval for f in found if f.approval), None),
        backup=next((f.backup for f in found if f.backup), None),
        **github,
    )


def recheck(check: GateCheck) -> GateCheck:
    """Ask again for a waiting check (the same question, a new record); the new one takes
    over the GitHub callback, which only one answer may use."""
    fields = {
        name: getattr(check, name)
        for name in (
            "github_app",
            "github_repository",
            "github_environment",
            "github_installation",
            "github_callback_url",
        )
    }
    again = ask(
        check.environment,
        version=check.version,
        commit=check.commit,
        pipeline_url=check.pipeline_url,
        asked_by=check.asked_by,
        token=check.token,
        user=check.token.created_by if check.token else None,
        source=check.source,
        **fields,
    )
    GateCheck.objects.filter(pk=check.pk).update(
        answered_at=timezone.now(), github_state="superseded"
    )
    return again
