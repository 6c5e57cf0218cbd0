"""Delivering Notification rows: claim, send, record; retry temporary failures later.

A row is saved before anything is sent and updated after, so a crash leaves
evidence. Retries are new queued tasks at a later time (picked up by the
dispatcher each tick), never a sleep inside a worker.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import connections, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from alerts.channels.base import Message, TransportError
from alerts.models import Channel, Incident, Notification, Priority
from opsconsole.http import backoff_delay
from opsconsole.tasks import enqueue

log = logging.getLogger("opsconsole.alerts.notify")

MAX_ATTEMPTS = 6
RETRY_BASE_SECONDS = 30
RETRY_CAP_SECONDS = 1800
# After a timeout, give the channel this long before trying it again: a peer that
# never answers must not tie up every worker while the others wait.
UNRESPONSIVE_PAUSE = timedelta(seconds=60)
# A send to the same channel still in flight after this long means the peer is
# slow: queue behind it instead of stacking more workers on the same hang.
SLOW_SEND = timedelta(seconds=1)
BEHIND_SLOW_SEND_WAIT = timedelta(seconds=15)
# How long a worker waits for one send before leaving it to its thread.
HANDOFF_SECONDS = 2.0
ACK_SALT = "alerts.incident-ack"

Status = Notification.Status


def ack_token(incident: Incident) -> str:
    return signing.dumps({"incident": incident.pk}, salt=ACK_SALT)


def incident_from_token(token: str) -> Incident:
    """The incident a signed link names; raises signing.BadSignature (or SignatureExpired)."""
    data = signing.loads(token, salt=ACK_SALT, max_age=settings.ALERTS_ACK_LINK_MAX_AGE)
    return Incident.objects.get(pk=data["incident"])


def absolute(path: str) -> str:
    return settings.OPSCONSOLE_BASE_URL.rstrip("/") + path


def build_message(notification: Notification) -> Message:
    incident = notification.incident
    if notification.event == Notification.Event.ANNOUNCE:
        p = notification.payload
        return Message(
            event=Notification.Event.ANNOUNCE,
            title=p.get("title", ""),
            priority=p.get("priority", Priority.LOW),
            component=p.get("component", ""),
            details=p.get("details", {}),
            at=notification.created_at,
            fingerprint=p.get("fingerprint", f"announce:{notification.pk}"),
            incident_url=p.get("url", ""),
        )
    if incident is None:  # a test notification
        return Message(
            event=Notification.Event.TEST,
            title=f"Test notification from opsconsole to {notification.channel.name}",
            priority=Priority.LOW,
            component="opsconsole",
            details={"note": "If you can read this, the channel works."},
            at=notification.created_at,
            fingerprint=f"test:{notification.channel_id}",
        )
    return Message(
        event=notification.event,
        title=incident.title,
        priority=incident.priority,
        component=incident.component,
        details={k: v for k, v in incident.details.items()},
        at=notification.created_at,
        fingerprint=incident.fingerprint,
        incident_id=incident.pk,
        ack_url=absolute(reverse("alerts:ack", args=[ack_token(incident)])),
        incident_url=absolute(reverse("admin:alerts_incident_change", args=[incident.pk])),
        level=notification.level,
    )


def enqueue_after_commit(ids: list[int]) -> None:
    """Queue deliveries once the rows are committed (a worker must find them)."""
    for pk in ids:
        transaction.on_commit(lambda pk=pk: enqueue("alerts.tasks.deliver_notification", pk))


def deliver(notification_id: int, now: datetime | None = None) -> str | None:
    """Send one notification if it is due and nobody else is sending it. Returns its new status."""
    now = now or timezone.now()
    claimed = Notification.objects.filter(
        pk=notification_id, status__in=[Status.QUEUED, Status.RETRYING], next_attempt_at__lte=now
    ).update(status=Status.SENDING, attempts=F("attempts") + 1, claimed_at=now)
    if not claimed:
        return None  # done, taken by another worker, or not yet due
    notification = Notification.objects.select_related("channel", "incident").get(
        pk=notification_id
    )
    channel = notification.channel
    if channel.unresponsive_until and channel.unresponsive_until > now:
        return _defer(
            notification, channel.unresponsive_until, "the channel did not answer recently"
        )
    stuck = (
        Notification.objects.filter(
            channel=channel, status=Status.SENDING, claimed_at__lt=now - SLOW_SEND
        )
        .exclude(pk=notification.pk)
        .exists()
    )
    if stuck:
        return _defer(
            notification, now + BEHIND_SLOW_SEND_WAIT, "another send to this channel is hanging"
        )
    message = build_message(notification)
    if channel.transport.local:
        return _record(notification, channel, _attempt(channel, message), now)
    return _send_with_handoff(notification, channel, message, now)


def _attempt(channel, message) -> tuple[Any, Exception | None]:
    """One send: (delivery, None), or (None, the exception) to be recorded, whatever it is."""
    try:
        return channel.transport.send(message), None
    except Exception as exc:
        return None, exc


class _Handoff:
    """Who records a send's outcome: the worker, or (after HANDOFF) the sending thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.finished = False
        self.abandoned = False
        self.outcome: tuple[Any, Exception | None] = (None, None)


def _send_with_handoff(notification, channel, message, now) -> str:
    """Send in a thread; if the peer is slow, leave the thread to finish and free the worker.

    A peer that accepts the connection and never answers would otherwise hold a
    worker for the whole read timeout, and a few of them stop every other
    channel's deliveries. After HANDOFF seconds the thread records the outcome
    itself (the row stays "sending" until then; the dispatcher re-drives it if
    the process dies first).
    """
    handoff = _Handoff()

    def send():
        outcome = _attempt(channel, message)
        with handoff.lock:
            handoff.finished, handoff.outcome = True, outcome
            record_here = handoff.abandoned
        if record_here:
            try:
                _record(notification, channel, outcome, timezone.now())
            finally:
                connections.close_all()

    thread = threading.Thread(target=send, name=f"notify-{notification.pk}", daemon=True)
    thread.start()
    thread.join(HANDOFF_SECONDS)
    with handoff.lock:
        if not handoff.finished:
            handoff.abandoned = True
            return Status.SENDING
    return _record(notification, channel, handoff.outcome, now)


def _record(notification, channel, outcome, now) -> str:
    delivery, error = outcome
    if isinstance(error, TransportError):
        return _failed(notification, channel, error, now)
    if error is not None:
        log.error("channel %s raised while sending: %r", channel.name, error)
        return _failed(
            notification, channel, TransportError(f"{type(error).__name__}: {error}"), now
        )
    Notification.objects.filter(pk=notification.pk).update(
        status=Status.SENT,
        sent_at=timezone.now(),
        http_status=delivery.http_status,
        provider_code=delivery.provider_code[:255],
        error="",
    )
    Channel.objects.filter(pk=channel.pk).update(
        last_status="sent", last_delivery_at=timezone.now(), unresponsive_until=None
    )
    return Status.SENT


def _defer(notification: Notification, until: datetime, why: str) -> str:
    """Give the claim back without counting an attempt: the channel, not this message, is stuck."""
    Notification.objects.filter(pk=notification.pk).update(
        status=Status.RETRYING,
        attempts=F("attempts") - 1,
        next_attempt_at=until,
        error=f"waiting: {why}",
    )
    return Status.RETRYING


def _failed(
    notification: Notification, channel: Channel, exc: TransportError, now: datetime
) -> str:
    attempts = notification.attempts
    final = exc.permanent or attempts >= MAX_ATTEMPTS
    update = {
        "http_status": exc.http_status,
        "provider_code": exc.provider_code[:255],
        "error": exc.message[:2000],
    }
    if final:
        update["status"] = Status.FAILED
    else:
        wait = backoff_delay(attempts - 1, base=RETRY_BASE_SECONDS, cap=RETRY_CAP_SECONDS)
        if exc.retry_after:
            wait = max(wait, min(exc.retry_after, RETRY_CAP_SECONDS))
        # Never sooner than 5 s: a burst of retries is what a struggling peer needs least.
        update.update(status=Status.RETRYING, next_attempt_at=now + timedelta(seconds=max(wait, 5)))
    Notification.objects.filter(pk=notification.pk).update(**update)
    channel_update = {"last_status": "failed" if final else "retrying"}
    if exc.timed_out:
        channel_update["unresponsive_until"] = now + UNRESPONSIVE_PAUSE
    Channel.objects.filter(pk=channel.pk).update(**channel_update)
    log.warning(
        "notification %s to %s failed (%s): %s",
        notification.pk,
        channel.name,
        "permanent" if exc.permanent else f"attempt {attempts}",
        exc.message,
    )
    if exc.permanent:
        channel.flag(exc.message)
    if final and notification.event != Notification.Event.TEST:
        _raise_channel_incident(channel, exc)
    return update["status"]


def _raise_channel_incident(channel: Channel, exc: TransportError) -> None:
    """A channel that cannot deliver is itself an incident, told on the other channels."""
    # The door (alerts.incidents) hands its notifications to this module: import at use.
    from alerts.incidents import raise_incident

    raise_incident(
        source="alerts",
        fingerprint=channel.fingerprint(),
        title=f"Notification channel '{channel.name}' cannot deliver",
        priority=Priority.HIGH,
        component="alerts",
        details={"channel": channel.name, "kind": channel.kind, "error": exc.message[:500]},
    )


def dispatch_due(now: datetime | None = None) -> int:
    """Scheduled each tick: re-drive work whose queue message is due, lost or orphaned."""
    now = now or timezone.now()
    # A worker that died mid-send leaves SENDING behind; after the task timeout it is ours again.
    stale = now - timedelta(seconds=settings.Q_TIMEOUT + 60)
    Notification.objects.filter(status=Status.SENDING, claimed_at__lt=stale).update(
        status=Status.RETRYING
    )
    due = Notification.objects.filter(
        Q(status=Status.RETRYING, next_attempt_at__lte=now)
        | Q(status=Status.QUEUED, created_at__lt=now - timedelta(minutes=2))
    ).values_list("pk", flat=True)[:1000]
    count = 0
    for pk in due:
        enqueue("alerts.tasks.deliver_notification", pk)
        count += 1
    return count


def send_test(channel: Channel) -> Notification:
    """The admin's "send test notification": a real delivery through the normal path."""
    notification = Notification.objects.create(channel=channel, event=Notification.Event.TEST)
    enqueue_after_commit([notification.pk])
    return notification
