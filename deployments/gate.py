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
# After a pre-deploy backup fails, the gate refuses (rather than starting another) this long.
FAILED_BACKUP_HOLDS = timedelta(hours=1)


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
    """Another deploy or a rollback under way: the answer is "wait", not "no"."""
    busy = env.deployments.filter(status__in=Deployment.ACTIVE)
    if deployment is not None:
        busy = busy.exclude(pk=deployment.pk)
    other = busy.order_by("-received_at").first()
    rolling = RollbackRequest.objects.filter(
        environment=env, status__in=RollbackRequest.ACTIVE
    ).first()
    if not (other or rolling):
        return Finding("nothing else in progress", "deploy_in_progress", True, "clear")
    retry = 30
    if other:
        detail = f"another deploy is in progress: {other.version} ({other.get_status_display()})"
        if other.watch_until:
            retry = max(retry, int((other.watch_until - timezone.now()).total_seconds()))
    else:
        detail = f"a rollback is in progress ({rolling.get_status_display().lower()})"
    return Finding("nothing else in progress", "deploy_in_progress", False, detail,
                   waiting=True, retry_after=retry)  # fmt: skip


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
    failed = (
        target.backups.filter(trigger=Backup.Trigger.PRE_DEPLOY,
                              created_at__gt=timezone.now() - FAILED_BACKUP_HOLDS)
        .order_by("-created_at").first()
    )  # fmt: skip
    if backup is None and failed is not None and failed.status == Backup.Status.FAILED:
        # Not another one at every question: a person looks at why it failed first.
        return Finding("recent backup", "backup_too_old", False,
                       f"{what}; the backup taken before a deploy ({failed.id}) failed: see "
                       f"it in the console")  # fmt: skip
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
    env: Environment,
    version: str,
    commit: str,
    pipeline_url: str,
    *,
    requested_by,
    token,
    who: str,
) -> Finding:
    """Where the environment asks for one: the approval of this version (filed now when
    nobody asked yet). Where two people are needed, the gate must know who deploys:
    a token's owner, or the console account of the GitHub user."""
    approvals = env.deploy_approvals.filter(version=version, commit=commit).exclude(
        status__in=(DeployApproval.Status.CANCELLED, DeployApproval.Status.FAILED)
    )
    approval = approvals.order_by("-requested_at").first()
    if approval is not None and approval.used():
        approval = None  # it let one deploy through; the next one is asked for again
    if approval is None:
        if requested_by is None and env.two_person_rule:
            return Finding("approval", "approval_required", False,
                           f"{env} needs a second person's approval, and the console cannot "
                           f"tell who deploys ({who} has no console account)")  # fmt: skip
        if (
            requested_by is not None
            and token is not None
            and not requested_by.has_perm(DeployApproval.REQUEST_PERMISSION)
        ):
            return Finding("approval", "approval_required", False,
                           f"{env} needs an approval, and the token's owner may not ask for "
                           f"one ({DeployApproval.REQUEST_PERMISSION})")  # fmt: skip
        approval = DeployApproval.objects.create(
            environment=env, version=version, commit=commit, pipeline_url=pipeline_url,
            requested_by=requested_by, requested_by_token=token,
            reason=f"the deploy gate asks before {version} goes out to {env} (for {who})",
        )  # fmt: skip
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
    **recorded,
) -> GateCheck:
    """Ask the gate; the answer is recorded and returned. `user` is who deploys (a
    token's owner, a GitHub user's account); `recorded` holds GateCheck fields to keep
    (a GitHub question's callback, when it was first asked)."""
    with tracing.span("deploy.gate", {"opsconsole.environment": env.name,
                                      "opsconsole.version": version}) as current:  # fmt: skip
        with transaction.atomic():
            # One question at a time per environment: two pipelines asking at once would
            # otherwise each file an approval, or each start a backup.
            Environment.objects.select_for_update().filter(pk=env.pk).first()
            check = _ask(env, version, commit, pipeline_url, asked_by, user, token,
                         start_backup or env.backup_before_deploy, source, recorded)  # fmt: skip
        current.set_attribute("opsconsole.outcome", check.answer)
        return check


def _ask(env, version, commit, pipeline_url, asked_by, user, token, start_backup, source, recorded):
    found = findings(env, start_backup=start_backup)
    found.append(incident_finding(env))
    if env.require_deploy_approval:
        found.append(approval_finding(env, version, commit, pipeline_url, requested_by=user,
                                      token=token, who=asked_by))  # fmt: skip
    failed = [f for f in found if not f.passed]
    if not failed:
        answer = GateCheck.Answer.ALLOWED
    elif all(f.waiting for f in failed):
        answer = GateCheck.Answer.WAITING
    else:
        answer = GateCheck.Answer.REFUSED
    retry = [f.retry_after for f in failed if f.retry_after]
    return GateCheck.objects.create(
        environment=env, version=version, commit=commit, pipeline_url=pipeline_url,
        source=source, asked_by=asked_by[:300], token=token, answer=answer,
        reasons=[{"code": f.code, "message": f.detail} for f in failed],
        retry_after=max(retry) if answer == GateCheck.Answer.WAITING and retry else None,
        approval=next((f.approval for f in found if f.approval), None),
        backup=next((f.backup for f in found if f.backup), None),
        **recorded,
    )  # fmt: skip


KEPT_ON_RECHECK = ("github_app", "github_repository", "github_environment",
                   "github_installation", "github_deployment", "github_callback_url",
                   "github_sender", "first_asked_at")  # fmt: skip


def recheck(check: GateCheck, user=None) -> GateCheck | None:
    """Ask a waiting question again (a new record, the same question). The old record is
    claimed first, in the same transaction: two workers rechecking it at once (the
    approval's hook and the minute sweep) produce one answer, never two."""
    with transaction.atomic():
        claimed = GateCheck.objects.filter(
            pk=check.pk, answer=GateCheck.Answer.WAITING, answered_at=None
        ).update(answered_at=timezone.now(), github_state="superseded")
        if not claimed:
            return None
        if user is None and check.token is not None:
            user = check.token.created_by
        elif user is None and check.github_app is not None and check.github_sender:
            user = check.github_app.console_user(check.github_sender)
        return ask(
            check.environment, version=check.version, commit=check.commit,
            pipeline_url=check.pipeline_url, asked_by=check.asked_by, token=check.token,
            user=user,
            source=check.source, **{name: getattr(check, name) for name in KEPT_ON_RECHECK},
        )  # fmt: skip


# Said to GitHub, whose comments anyone who can read the repository sees: what kind of
# reason, never its details (incident titles, backup names, approval links).
REASON_WORDS = {
    "deploy_freeze": "a deploy freeze is on",
    "open_incident": "a critical or high incident is open",
    "backup_too_old": "the newest backup of the database is too old",
    "variables_missing": "required variables are missing on the provider",
    "variables_invalid": "a variable's value has the wrong form",
    "variables_drift": "variables changed on the provider behind the console's back",
    "variables_unknown": "the provider's variables could not be read",
    "deploy_in_progress": "another deploy or a rollback is in progress",
    "approval_required": "an approval is needed and cannot be asked for",
    "approval_rejected": "an approver rejected this deploy",
    "approval_pending": "waiting for an approval",
}
