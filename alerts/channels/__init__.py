"""Notification channels: one small class per kind, listed in one registry.

The model's `kind` choices are built from CHANNEL_KINDS; nothing else in the
code asks which kind a channel is.
"""

from __future__ import annotations

from alerts.channels.base import Transport
from alerts.channels.email import EmailChannel
from alerts.channels.inbox import InboxChannel
from alerts.channels.log import LogChannel
from alerts.channels.pagerduty import PagerDutyChannel
from alerts.channels.slack import SlackChannel
from alerts.channels.twilio import SmsChannel, VoiceChannel
from alerts.channels.webhook import WebhookChannel

CHANNEL_KINDS: dict[str, type[Transport]] = {
    cls.kind: cls
    for cls in (
        LogChannel,
        InboxChannel,
        SlackChannel,
        EmailChannel,
        SmsChannel,
        VoiceChannel,
        PagerDutyChannel,
        WebhookChannel,
    )
}


def channel_class(kind: str) -> type[Transport]:
    try:
        return CHANNEL_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown channel kind {kind!r}") from None
