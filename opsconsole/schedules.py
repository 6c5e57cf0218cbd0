"""The console's own recurring jobs, kept in django-q2's Schedule table.

Apps register theirs from `AppConfig.ready()` under names "<app label>.<job>";
`sync()` runs after every `migrate` and creates or updates the rows, and
removes rows of that form that no app registers any more, so nobody makes
schedules by hand and a renamed or retired job is fixed by the next deploy.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django_q.models import Schedule

_registry: dict[str, SystemSchedule] = {}


@dataclass(frozen=True)
class SystemSchedule:
    name: str
    func: str  # dotted path: it is stored in the database, so keep it stable
    cron: str  # five fields, or six with seconds last ("* * * * * */30")


def register(name: str, func: str, *, cron: str) -> None:
    _registry[name] = SystemSchedule(name=name, func=func, cron=cron)


def registered() -> list[SystemSchedule]:
    return list(_registry.values())


def sync(**kwargs) -> None:
    """post_migrate receiver: make the Schedule rows match the registry."""
    labels = {config.label for config in apps.get_app_configs()}
    retired = [
        row.pk
        for row in Schedule.objects.filter(name__contains=".").only("pk", "name")
        if row.name.split(".", 1)[0] in labels and row.name not in _registry
    ]
    Schedule.objects.filter(pk__in=retired).delete()
    for item in _registry.values():
        row = Schedule.objects.filter(name=item.name).first()
        if row and (row.func, row.cron, row.schedule_type) == (item.func, item.cron, Schedule.CRON):
            continue
        Schedule.objects.update_or_create(
            name=item.name,
            defaults={
                "func": item.func,
                "cron": item.cron,
                "schedule_type": Schedule.CRON,
                "repeats": -1,
            },
        )
