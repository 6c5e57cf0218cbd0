"""The one door for alarms.

Every source — alert rules, failed backups, unhealthy services, rollbacks, RPO
breaches, Sentry, Alertmanager — calls `raise_incident()` and, when the
trouble is over, `resolve_incident()`. Dedup, cooldown, silences, routing,
escalation, acknowledgement and "resolved" messages live here, once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from alerts import notify
from alerts.models import (
    Channel,
    EscalationLevel,
    EscalationPolicy,
    Incident,
    IncidentEvent,
    Notification,
    Priority,
    PriorityPolicy,
    Silence,
)
from opsconsole import permissions

log = logging.getLogger("opsconsole.alerts")

Kind = IncidentEvent.Kind
Status = Incident.Status


def raise_incident(
    source: str,
    fingerprint: str,
    title: str,
    priority: str,
    component: str = "",
    details: dict[str, Any] | None = None,
    *,
    policy: EscalationPolicy | None = None,
    now: datetime | None = None,
) -> Incident:
    """Open an incident for `fingerprint`, or count a repeat of the open one.

    Idempotent while the incident is open: a database constraint allows one
    open incident per fingerprint, so two workers racing here open one.
    """
    if priority not in Priority.values:
        raise ValueError(f"unknown priority {priority!r}")
    now = now or timezone.now()
    details = details or {}
    for _ in range(3):
        try:
            with transaction.atomic():
                incident = (
                    Incident.objects.select_for_update()
                    .filter(fingerprint=fingerprint)
                    .exclude(status=Status.RESOLVED)
                    .first()
                )
                if incident is not None:
                    _repeat(incident, details, now)
                    return incident
                return _open(source, fingerprint, title, priority, component, details, policy, now)
        except IntegrityError:
            # Another worker opened it between our read and our insert: go again,
            # this time as a repeat of theirs.
            continue
    raise RuntimeError(f"could not open or find the incident {fingerprint!r}")


def resolve_incident(
    fingerprint: str, *, reason: str = "", user=None, now: datetime | None = None
) -> Incident | None:
    """Resolve the open incident for `fingerprint` (if any) and tell everyone who was told."""
    now = now or timezone.now()
    with transaction.atomic():
        incident = (
            Incident.objects.select_for_update()
            .filter(fingerprint=fingerprint)
            .exclude(status=Status.RESOLVED)
            .first()
        )
        if incident is None:
            return None
        incident.status = Status.RESOLVED
        incident.resolved_at = now
        incident.resolved_by = user
        incident.resolution = reason[:300]
        incident.next_escalation_at = None
        incident.save(
            update_fields=[
                "status",
                "resolved_at",
                "resolved_by",
                "resolution",
                "next_escalation_at",
            ]
        )
        incident.log(Kind.RESOLVED, reason, user=user)
        # Always, even when acknowledged or silenced since: whoever heard "firing"
        # must hear "resolved".
        _notify(incident, told_firing(incident), Notification.Event.RESOLVED, level=-1, now=now)
    return incident


def resolve_by_hand(incident: Incident, user, reason: str = "resolved by hand") -> Incident | None:
    """A person says it is over; PermissionDenied for a user without the right."""
    if not user.has_perm(permissions.ACKNOWLEDGE_INCIDENT):
        raise PermissionDenied("You may not resolve incidents.")
    return resolve_incident(incident.fingerprint, reason=reason, user=user)


def announce(
    source: str,
    title: str,
    *,
    component: str = "",
    details: dict[str, Any] | None = None,
    priority: str = Priority.LOW,
    url: str = "",
) -> list[Notification]:
    """Good news through the same channels (a deploy went well): no incident, no escalation.

    Goes to the channels of the default policy's first level that take `priority`.
    """
    policy = EscalationPolicy.default()
    first = policy.levels.order_by("position").first() if policy else None
    channels = first.channels.all() if first else Channel.objects.all()
    payload = {
        "title": title,
        "component": component,
        "details": details or {},
        "priority": priority,
        "url": url,
        "source": source,
    }
    rows = Notification.objects.bulk_create(
        [
            Notification(channel=c, event=Notification.Event.ANNOUNCE, payload=payload)
            for c in channels
            if c.receives(priority)
        ]
    )
    notify.wake_delivery()
    return rows


def acknowledge(incident: Incident, user, now: datetime | None = None) -> bool:
    """Someone has it: stop escalation and repeats, and tell whoever was paged.

    PermissionDenied for a user without the right; False when the incident was
    not in the triggered state (acknowledged or resolved already).
    """
    if not user.has_perm(permissions.ACKNOWLEDGE_INCIDENT):
        raise PermissionDenied("You may not acknowledge incidents.")
    now = now or timezone.now()
    with transaction.atomic():
        claimed = Incident.objects.filter(pk=incident.pk, status=Status.TRIGGERED).update(
            status=Status.ACKNOWLEDGED,
            acknowledged_by=user,
            acknowledged_at=now,
            next_escalation_at=None,
        )
        if not claimed:
            return False
        incident.refresh_from_db()
        incident.log(Kind.ACKNOWLEDGED, f"acknowledged by {user}", user=user)
        _notify(incident, told_firing(incident), Notification.Event.ACKNOWLEDGED, level=-1, now=now)
    return True


def escalate_due(now: datetime | None = None) -> int:
    """Scheduled each tick: lift ended silences, and escalate unacknowledged incidents."""
    now = now or timezone.now()
    done = 0
    for incident in Incident.objects.filter(status=Status.TRIGGERED, silence__isnull=False):
        if Silence.active_for(incident, now) is None:
            with transaction.atomic():
                if Incident.objects.filter(pk=incident.pk, silence=incident.silence_id).update(
                    silence=None
                ):
                    incident.silence = None
                    incident.log(Kind.NOTE, "silence ended: notifying")
                    _start_notifying(incident, now)
                    done += 1
    due = Incident.objects.filter(
        status=Status.TRIGGERED, silence__isnull=True, next_escalation_at__lte=now
    ).select_related("escalation_policy")
    for incident in due:
        next_level = incident.escalation_level + 1
        with transaction.atomic():
            # Claim the step: a second scheduler pass cannot escalate the same level twice.
            claimed = Incident.objects.filter(
                pk=incident.pk,
                status=Status.TRIGGERED,
                escalation_level=incident.escalation_level,
                next_escalation_at=incident.next_escalation_at,
            ).update(escalation_level=next_level)
            if not claimed:
                continue
            incident.escalation_level = next_level
            _notify_level(incident, next_level, Notification.Event.FIRING, now, escalated=True)
            done += 1
    return done


# --- inside the door -------------------------------------------------------------


def _open(source, fingerprint, title, priority, component, details, policy, now) -> Incident:
    incident = Incident.objects.create(
        fingerprint=fingerprint,
        source=source,
        title=title[:300],
        priority=priority,
        component=component,
        details=details,
        opened_at=now,
        last_seen_at=now,
        escalation_policy=policy or EscalationPolicy.default(),
    )
    incident.log(Kind.OPENED, title, source=source)
    silence = Silence.active_for(incident, now)
    if silence is not None:
        Incident.objects.filter(pk=incident.pk).update(silence=silence)
        incident.silence = silence
        incident.log(Kind.SILENCED, f"silenced: {silence.reason}", silence_id=silence.pk)
        return incident
    _start_notifying(incident, now)
    return incident


def _start_notifying(incident: Incident, now: datetime) -> None:
    incident.notifying_since = now
    incident.save(update_fields=["notifying_since"])
    cooldown = PriorityPolicy.cooldown(incident.priority)
    recent = (
        Incident.objects.filter(
            fingerprint=incident.fingerprint, last_notified_at__gt=now - cooldown
        )
        .exclude(pk=incident.pk)
        .exists()
    )
    if recent:
        # The same trouble was announced moments ago (a flapping source): do not
        # page again within the cooldown; escalation still runs if nobody reacts.
        incident.escalation_level = 0
        incident.next_escalation_at = _next_escalation_time(incident, 0)
        incident.save(update_fields=["escalation_level", "next_escalation_at"])
        incident.log(
            Kind.NOTE, f"notification held back: cooldown of {cooldown} after the last one"
        )
        return
    _notify_level(incident, 0, Notification.Event.FIRING, now)


def _repeat(incident: Incident, details: dict[str, Any], now: datetime) -> None:
    Incident.objects.filter(pk=incident.pk).update(
        count=F("count") + 1, last_seen_at=now, details=details
    )
    incident.refresh_from_db()
    if (
        incident.status != Status.TRIGGERED
        or incident.silenced
        or incident.last_notified_at is None
    ):
        return
    if now - incident.last_notified_at < PriorityPolicy.cooldown(incident.priority):
        return
    incident.log(Kind.REPEATED, f"seen {incident.count} times")
    channels = told_firing(incident)
    _notify(incident, channels, Notification.Event.REPEAT, level=incident.escalation_level, now=now)
    Incident.objects.filter(pk=incident.pk).update(last_notified_at=now)


def _levels(incident: Incident) -> list[EscalationLevel]:
    if incident.escalation_policy_id is None:
        return []
    return list(incident.escalation_policy.levels.order_by("position"))


def _next_escalation_time(
    incident: Incident, position: int, levels: list[EscalationLevel] | None = None
) -> datetime | None:
    later = [
        lv for lv in (_levels(incident) if levels is None else levels) if lv.position > position
    ]
    if not later:
        return None
    start = incident.notifying_since or incident.opened_at
    return start + timedelta(minutes=later[0].delay_minutes)


def _notify_level(
    incident: Incident, position: int, event: str, now: datetime, escalated: bool = False
) -> None:
    all_levels = _levels(incident)
    levels = [lv for lv in all_levels if lv.position == position]
    if levels:
        channels = [c for c in levels[0].channels.all() if c.receives(incident.priority)]
    elif position == 0 and not all_levels:
        # No escalation policy at all: every channel that takes this priority.
        channels = [c for c in Channel.objects.all() if c.receives(incident.priority)]
    else:
        channels = []
    _notify(incident, channels, event, level=position, now=now)
    incident.escalation_level = position
    incident.last_notified_at = now
    incident.next_escalation_at = _next_escalation_time(incident, position, all_levels)
    incident.save(update_fields=["escalation_level", "last_notified_at", "next_escalation_at"])
    names = ", ".join(c.name for c in channels) or "no channel takes this priority"
    incident.log(
        Kind.ESCALATED if escalated else Kind.NOTIFIED, f"level {position}: {names}", level=position
    )


def told_firing(incident: Incident) -> list[Channel]:
    ids = (
        Notification.objects.filter(
            incident=incident, event__in=[Notification.Event.FIRING, Notification.Event.REPEAT]
        )
        .exclude(status=Notification.Status.FAILED)
        .values_list("channel_id", flat=True)
        .distinct()
    )
    return list(Channel.objects.filter(pk__in=list(ids), flagged_at__isnull=True))


def _notify(
    incident: Incident, channels: list[Channel], event: str, *, level: int, now: datetime
) -> None:
    Notification.objects.bulk_create(
        [
            Notification(
                incident=incident,
                channel=c,
                event=event,
                level=level,
                created_at=now,
                next_attempt_at=now,
            )
            for c in channels
        ]
    )
    notify.wake_delivery()
