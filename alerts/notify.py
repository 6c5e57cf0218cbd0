"""Delivering Notification rows: claim, send, record; retry temporary failures later.

A row is saved before anything is sent and updated after, so a crash leaves
evidence. The alert path's delivery loop (`deliver_due`, every second, and at
once when a notification is committed in its process) sends what is due; a
retry is the same row due again later, never a sleep.

A send holds a lease, renewed while it lasts; a send that a crash cut short is
sent again once its lease runs out (`OPSCONSOLE_LEASE_SECONDS` after the last
renewal, settled by the reconciler). Every send of a row carries the
same idempotency key (`Message.delivery_key`: PagerDuty deduplicates on its
`dedup_key`, a webhook gets an `Idempotency-Key` header), so a receiver that
can tell does not page twice. Slack and SMS cannot tell: there a crash mid-send
can repeat the message, at most a lease plus one reconciler pass later (70 s).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core import signing
from django.db import connections
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from alerts.channels.base import Message, TransportError
from alerts.models import Channel, Incident, Notification, Priority
from opsconsole import alertpath, leases, tracing
from opsconsole.http import backoff_delay

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
DELIVERY_THREADS = 16
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
            delivery_key=delivery_key(notification),
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
            delivery_key=delivery_key(notification),
        )
    # Who acted comes first: "ACKNOWLEDGED" alone leaves everyone else asking who has it.
    details: dict = {}
    if notification.event == Notification.Event.ACKNOWLEDGED and incident.acknowledged_by_id:
        details["acknowledged_by"] = str(incident.acknowledged_by)
    if notification.event == Notification.Event.RESOLVED:
        details["resolved_by"] = str(incident.resolved_by or "the console")
        details["resolution"] = incident.resolution
    details.update(incident.details)
    return Message(
        event=notification.event,
        title=incident.title,
        priority=incident.priority,
        component=incident.component,
        details=details,
        at=notification.created_at,
        fingerprint=incident.fingerprint,
        incident_id=incident.pk,
        delivery_key=delivery_key(notification),
        ack_url=absolute(reverse("alerts:ack", args=[ack_token(incident)])),
        incident_url=absolute(reverse("admin:alerts_incident_change", args=[incident.pk])),
        level=notification.level,
    )


def delivery_key(notification: Notification) -> str:
    """The same for every send of one notification, different for every notification."""
    return f"opsconsole-notification-{notification.pk}"


def wake_delivery() -> None:
    """Send what was just queued as soon as it is committed, not at the next tick."""
    alertpath.wake_after_commit("alerts.deliver")


def deliver(notification_id: int, now: datetime | None = None) -> str | None:
    """Send one notification if it is due and nobody else is sending it. Returns its new status."""
    now = now or timezone.now()
    claimed = Notification.objects.filter(
        pk=notification_id, status__in=[Status.QUEUED, Status.RETRYING], next_attempt_at__lte=now
    ).update(
        status=Status.SENDING,
        attempts=F("attempts") + 1,
        claimed_at=now,
        lease_expires_at=leases.expiry(now),
    )
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
        return _record(notification, channel, _attempt(notification, channel, message), now)
    return _send_with_handoff(notification, channel, message, now)


def _attempt(notification, channel, message) -> tuple[Any, Exception | None]:
    """One send: (delivery, None), or (None, the exception) to be recorded, whatever it is.
    The send's lease is renewed while it lasts (a voice call to four numbers takes a while)."""
    # The send joins the trace that queued the notification (a failing check, a restore),
    # linked to the delivery tick that sent it.
    with tracing.continued(
        notification.traceparent,
        f"notify {channel.kind}",
        {
            "opsconsole.channel": channel.name,
            "opsconsole.channel.kind": channel.kind,
            "opsconsole.notification": notification.pk,
            "opsconsole.notification.event": notification.event,
            "opsconsole.notification.attempt": notification.attempts,
        },
    ) as current:
        try:
            with leases.held(notification, beat_jobs=False):
                delivery = channel.transport.send(message)
        except Exception as exc:
            current.set_status(tracing.Status(tracing.StatusCode.ERROR, type(exc).__name__))
            if isinstance(exc, TransportError):
                tracing.set_attributes(
                    {
                        "opsconsole.provider.status": exc.http_status,
                        "opsconsole.provider.code": exc.provider_code[:100],
                        "opsconsole.notification.permanent": exc.permanent,
                    }
                )
            return None, exc
        tracing.set_attributes(
            {
                "opsconsole.provider.status": delivery.http_status,
                "opsconsole.provider.code": delivery.provider_code[:100],
            }
        )
        return delivery, None


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
        outcome = _attempt(notification, channel, message)
        with handoff.lock:
            handoff.finished, handoff.outcome = True, outcome
            record_here = handoff.abandoned
        if record_here:
            try:
                _record(notification, channel, outcome, timezone.now())
            finally:
                connections.close_all()

    thread = threading.Thread(
        target=tracing.in_context(send), name=f"notify-{notification.pk}", daemon=True
    )
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
    # Only while still ours: a send the reconciler re-queued is recorded by its re-send.
    Notification.objects.filter(pk=notification.pk, status=Status.SENDING).update(
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
    Notification.objects.filter(pk=notification.pk, status=Status.SENDING).update(
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
    Notification.objects.filter(pk=notification.pk, status=Status.SENDING).update(**update)
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


def deliver_due(now: datetime | None = None, pool: ThreadPoolExecutor | None = None) -> int:
    """The alert path's delivery loop: send every notification that is due.

    With no pool (tests, one-off calls) the sends run one after another in this
    thread; the loop passes its own pool so one slow peer never holds the rest.
    """
    now = now or timezone.now()
    due = list(
        Notification.objects.filter(
            status__in=[Status.QUEUED, Status.RETRYING], next_attempt_at__lte=now
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:1000]
    )
    if pool is None:
        for pk in due:
            deliver(pk)
    else:
        list(pool.map(tracing.in_context(_deliver_in_thread), due))
    return len(due)


def _deliver_in_thread(pk: int) -> str | None:
    try:
        return deliver(pk)
    finally:
        connections.close_all()  # this thread's own


_pool: ThreadPoolExecutor | None = None


def delivery_tick() -> int:
    """What the alert path runs every second (see `alerts.apps`)."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=DELIVERY_THREADS, thread_name_prefix="deliver")
    return deliver_due(pool=_pool)


def lease_expired(notification: Notification) -> bool:
    """A send cut short (the alert path died mid-send): send it again, with the same
    idempotency key."""
    return bool(
        Notification.objects.filter(pk=notification.pk, status=Status.SENDING).update(
            status=Status.RETRYING,
            next_attempt_at=timezone.now(),
            error="the send was cut short (the process stopped); sending again",
        )
    )


def send_test(channel: Channel) -> Notification:
    """The admin's "send test notification": a real delivery through the normal path."""
    notification = Notification.objects.create(channel=channel, event=Notification.Event.TEST)
    wake_delivery()
    return notification
