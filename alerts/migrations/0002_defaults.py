"""The nine shipped alert rules, cooldowns, channels and three-level escalation.

All editable afterwards. Channels that need addresses, numbers or keys ship
disabled until someone configures them; the log channel works from the start.
"""

from django.db import migrations

RULES = [
    # name, category, metric, aggregation, window s, comparator, threshold, for s, priority, template
    ("High CPU", "system", "system.high_cpu", "avg", 300, "above", 80, 300, "high",
     "CPU at {value}% for {duration} (threshold {threshold}%)"),
    ("High memory", "system", "system.high_memory", "avg", 300, "above", 90, 300, "high",
     "Memory at {value}% for {duration} (threshold {threshold}%)"),
    ("Low disk space", "system", "system.disk_space", "last", 0, "above", 85, 0, "medium",
     "Disk {value}% full (threshold {threshold}%)"),
    ("High API error rate", "api", "api.error_rate", "avg", 300, "above", 5, 300, "high",
     "API error rate {value}% for {duration} (threshold {threshold}%)"),
    ("Slow API responses", "api", "api.response_time_ms", "avg", 600, "above", 2000, 600, "medium",
     "Average response time {value} ms for {duration} (threshold {threshold} ms)"),
    ("Rate limit exceeded", "api", "api.rate_limit_exceeded", "sum", 60, "above", 1000, 0, "medium",
     "{value} rate-limited requests in 60 s (threshold {threshold})"),
    ("YouTube quota usage", "business", "business.youtube_quota_usage", "last", 0, "above", 80, 0, "high",
     "YouTube API quota at {value}% (threshold {threshold}%)"),
    # A lower bound: the cache is unhealthy when the hit rate falls BELOW 60 %.
    ("Low cache hit rate", "business", "business.cache_hit_rate", "avg", 1800, "below", 60, 1800, "medium",
     "Cache hit rate {value}% for {duration} (below {threshold}%)"),
    ("Payment failures", "business", "business.payment_failure", "sum", 3600, "above", 5, 0, "critical",
     "{value} payment failures in the last hour (threshold {threshold})"),
]  # fmt: skip

COOLDOWNS = {"critical": 5, "high": 15, "medium": 30, "low": 60}

CHANNELS = [
    # name, kind, priorities, enabled, config
    ("Console log", "log", ["critical", "high", "medium", "low"], True, {}),
    ("Slack #alerts", "slack", ["critical", "high", "medium", "low"], False, {}),
    ("On-call email", "email", ["critical", "high"], False, {"to": []}),
    ("Team lead and backup on-call email", "email", ["critical", "high"], False, {"to": []}),
    ("On-call SMS", "sms", ["critical"], False, {"to_numbers": []}),
    ("CTO and DevOps email", "email", ["critical", "high"], False, {"to": []}),
    ("CTO and DevOps SMS", "sms", ["critical"], False, {"to_numbers": []}),
    ("CTO voice call", "voice", ["critical"], False, {"to_numbers": []}),
    ("PagerDuty", "pagerduty", ["critical"], False, {}),
]

LEVELS = [
    (0, 0, "On-call by email and Slack", ["Console log", "Slack #alerts", "On-call email", "PagerDuty"]),
    (1, 15, "Team lead and backup on-call, adding SMS",
     ["Console log", "Team lead and backup on-call email", "On-call SMS"]),
    (2, 30, "CTO and the DevOps team, adding a voice call",
     ["Console log", "CTO and DevOps email", "CTO and DevOps SMS", "CTO voice call"]),
]  # fmt: skip


def create(apps, schema_editor):
    AlertRule = apps.get_model("alerts", "AlertRule")
    PriorityPolicy = apps.get_model("alerts", "PriorityPolicy")
    Channel = apps.get_model("alerts", "Channel")
    EscalationPolicy = apps.get_model("alerts", "EscalationPolicy")
    EscalationLevel = apps.get_model("alerts", "EscalationLevel")
    for name, category, key, agg, window, comparator, threshold, hold, priority, template in RULES:
        AlertRule.objects.get_or_create(
            name=name,
            defaults=dict(
                category=category, component=category, metric_key=key, aggregation=agg,
                window_seconds=window, comparator=comparator, threshold=threshold,
                for_seconds=hold, priority=priority, message_template=template,
                no_data="ok" if agg in ("sum", "count") else "keep",
            ),
        )  # fmt: skip
    for priority, minutes in COOLDOWNS.items():
        PriorityPolicy.objects.get_or_create(
            priority=priority, defaults={"cooldown_minutes": minutes}
        )
    channels = {}
    for name, kind, priorities, enabled, config in CHANNELS:
        channels[name], _ = Channel.objects.get_or_create(
            name=name,
            defaults=dict(kind=kind, priorities=priorities, enabled=enabled, config=config),
        )
    policy, _ = EscalationPolicy.objects.get_or_create(
        name="Default", defaults={"is_default": True}
    )
    for position, delay, description, names in LEVELS:
        level, _ = EscalationLevel.objects.get_or_create(
            policy=policy,
            position=position,
            defaults={"delay_minutes": delay, "description": description},
        )
        level.channels.add(*(channels[n] for n in names))


def remove(apps, schema_editor):
    apps.get_model("alerts", "EscalationPolicy").objects.filter(name="Default").delete()
    apps.get_model("alerts", "Channel").objects.filter(name__in=[c[0] for c in CHANNELS]).delete()
    apps.get_model("alerts", "PriorityPolicy").objects.all().delete()
    apps.get_model("alerts", "AlertRule").objects.filter(name__in=[r[0] for r in RULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial")]
    operations = [migrations.RunPython(create, remove)]
