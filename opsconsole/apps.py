from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class OpsConsoleConfig(AppConfig):
    name = "opsconsole"
    verbose_name = "Console"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created
        from django.db.models.signals import post_migrate
        from django_q.signals import post_spawn

        from opsconsole import dashboard, schedules
        from opsconsole.db import install_slow_query_logger
        from opsconsole.tasks import worker_started

        connection_created.connect(install_slow_query_logger, dispatch_uid="opsconsole-slow-query")
        post_migrate.connect(_after_last_app_migrated, dispatch_uid="opsconsole-post-migrate")
        post_spawn.connect(worker_started, dispatch_uid="opsconsole-heartbeat")
        schedules.register(
            "opsconsole.heartbeat", "opsconsole.tasks.heartbeat", cron="* * * * * */30"
        )
        schedules.register(
            "opsconsole.reap_interrupted",
            "opsconsole.approvals.tasks.reap_interrupted",
            cron="*/2 * * * *",
        )
        dashboard.register(
            dashboard.Panel(
                "worker", "Worker", "opsconsole/panels/worker.html", worker_panel, order=90
            )
        )


def _after_last_app_migrated(sender, **kwargs) -> None:
    """post_migrate is sent once per app; roles must see every app's permissions."""
    from django.apps import apps

    from opsconsole import roles, schedules

    with_models = [c for c in apps.get_app_configs() if c.models_module is not None]
    if sender is with_models[-1]:
        roles.sync()
        schedules.sync()


def worker_panel(request) -> dict:
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone
    from django_q.models import Failure, OrmQ

    from opsconsole.models import WorkerHeartbeat

    age = WorkerHeartbeat.age()
    alive = age is not None and age.total_seconds() <= settings.WORKER_HEARTBEAT_MAX_AGE
    since = timezone.now() - timedelta(hours=24)
    return {
        "alive": alive,
        "heartbeat": "never" if age is None else f"{int(age.total_seconds())} s ago",
        # OrmQ holds the ORM broker's queue; with Redis it is empty and the queue lives there.
        "queued": OrmQ.objects.count(),
        "failed": Failure.objects.filter(stopped__gte=since).count(),
    }


class OpsAdminConfig(AdminConfig):
    default_site = "opsconsole.sites.OpsAdminSite"
