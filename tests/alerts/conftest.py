from datetime import UTC, datetime

import pytest

from alerts.models import Channel, EscalationLevel, EscalationPolicy, Notification
from alerts.notify import deliver

T0 = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)


def deliver_all(now) -> list[str]:
    """Run every due delivery, as the workers would."""
    ids = Notification.objects.filter(
        status__in=[Notification.Status.QUEUED, Notification.Status.RETRYING],
        next_attempt_at__lte=now,
    ).values_list("pk", flat=True)
    return [deliver(pk, now=now) for pk in list(ids)]


@pytest.fixture
def channels(db):
    """Three log channels and a policy: level 0 now, level 1 after 15 min, level 2 after 30 min."""
    Channel.objects.update(enabled=False)  # the shipped channels stay out of the way
    made = {
        name: Channel.objects.create(
            name=name, kind="log", priorities=["critical", "high", "medium", "low"]
        )
        for name in ("first", "second", "third")
    }
    policy = EscalationPolicy.objects.create(name="test policy")
    for position, delay, name in ((0, 0, "first"), (1, 15, "second"), (2, 30, "third")):
        level = EscalationLevel.objects.create(
            policy=policy, position=position, delay_minutes=delay
        )
        level.channels.add(made[name])
    EscalationPolicy.objects.update(is_default=False)
    EscalationPolicy.objects.filter(pk=policy.pk).update(is_default=True)
    return made
