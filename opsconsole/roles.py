"""The three roles and what each may do.

Groups Viewer, Operator and Approver are created by a migration; their
permissions are (re)granted after every `migrate`, because the apps that add
models (and so permissions) come later than the groups. Apps add their own
grants from `AppConfig.ready()` with `grant()`.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from django.contrib.auth.models import Group, Permission

from opsconsole import permissions

VIEWER, OPERATOR, APPROVER = "Viewer", "Operator", "Approver"
ROLES = (VIEWER, OPERATOR, APPROVER)

# App labels whose records every role may look at.
CONSOLE_APPS = ("opsconsole", "alerts", "backups", "deployments", "dr", "django_q")

_grants: dict[str, set[str]] = {
    VIEWER: {f"{app}.view_*" for app in CONSOLE_APPS},
    OPERATOR: {
        permissions.RUN_JOBS,
        permissions.ACKNOWLEDGE_INCIDENT,
        permissions.WORK_RUNBOOKS,
        permissions.REQUEST_ROLLBACK,
        permissions.REQUEST_RESTORE,
        permissions.REQUEST_FAILOVER,
        permissions.REQUEST_DEPLOY,
    },
    APPROVER: {"opsconsole.approve_*"},
}
# Each role includes the one before it.
_INHERITS = {OPERATOR: VIEWER, APPROVER: OPERATOR}


def grant(role: str, *patterns: str) -> None:
    """Give `role` (and the roles above it) permissions matching `app_label.codename` patterns."""
    if role not in _grants:
        raise ValueError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    _grants[role].update(patterns)


def patterns_for(role: str) -> set[str]:
    patterns = set(_grants[role])
    if role in _INHERITS:
        patterns |= patterns_for(_INHERITS[role])
    return patterns


def sync(**kwargs) -> None:
    """post_migrate receiver: give each group the permissions its patterns match.

    It only adds: what an administrator granted a group by hand stays.
    """
    permissions = list(Permission.objects.select_related("content_type"))
    for role in ROLES:
        group, _ = Group.objects.get_or_create(name=role)
        wanted = patterns_for(role)
        group.permissions.add(
            *[
                p
                for p in permissions
                if any(fnmatchcase(f"{p.content_type.app_label}.{p.codename}", w) for w in wanted)
            ]
        )
