"""The shipped health checks: editable, disabled until their target is configured."""

from django.db import migrations

DEFAULTS = [
    # name, kind, interval s, timeout s, retries
    ("Primary API", "http", 30, 5, 3),
    ("Database", "postgres", 60, 10, 2),
    ("Redis", "redis", 30, 3, 3),
    ("YouTube API (upstream)", "http", 300, 15, 1),
]


def create(apps, schema_editor):
    ServiceCheck = apps.get_model("dr", "ServiceCheck")
    for name, kind, interval, timeout, retries in DEFAULTS:
        ServiceCheck.objects.get_or_create(
            name=name,
            defaults=dict(
                kind=kind,
                interval_seconds=interval,
                timeout_seconds=timeout,
                retries=retries,
                enabled=False,
                config={"url": "", "expected_status": 200} if kind == "http" else {},
            ),
        )


def remove(apps, schema_editor):
    apps.get_model("dr", "ServiceCheck").objects.filter(name__in=[d[0] for d in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("dr", "0001_initial")]
    operations = [migrations.RunPython(create, remove)]
