"""The console's own app: signals, its schedules and panel, and the admin site."""

from django.apps import AppConfig, apps
from django.contrib.admin.apps import AdminConfig
from django.db.backends.signals import connection_created
from django.db.models.signals import post_migrate


class OpsConsoleConfig(AppConfig):
    name = "opsconsole"
    verbose_name = "Console"

    def ready(self) -> None:
        from django.conf import settings

        from opsconsole import tracing

        # Before any request is served or task run; a no-op with no OTLP endpoint.
        tracing.setup(
            environment=settings.OPSCONSOLE_ENV,
            rate=settings.OPSCONSOLE_TRACES_SAMPLE_RATE,
            service_version=settings.BUILD_ID,
        )
        # What follows reads models (django-q2's signals too): it is imported once
        # the app registry is ready.
        from django_q.signals import post_spawn

        from opsconsole import (
            alertpath,
            dashboard,
            guarded,
            leases,
            needs,
            reconcile,
            schedules,
            status,
        )
        from opsconsole.approvals.tasks import approval_models, approved_waiting
        from opsconsole.db import install_slow_query_logger
        from opsconsole.panels import worker_panel, worker_status
        from opsconsole.tasks import worker_started

        connection_created.connect(install_slow_query_logger, dispatch_uid="opsconsole-slow-query")
        post_migrate.connect(_after_last_app_migrated, dispatch_uid="opsconsole-post-migrate")
        post_spawn.connect(worker_started, dispatch_uid="opsconsole-heartbeat")
        schedules.register(
            "opsconsole.heartbeat", "opsconsole.tasks.heartbeat", cron="* * * * * */30"
        )
        # The alert path's own loops: its heartbeat, the reconciler, the dead-man's switch.
        alertpath.register("opsconsole.heartbeat", "opsconsole.alertpath.beat", every=5)
        alertpath.register(
            "opsconsole.reconcile",
            "opsconsole.reconcile.reconcile",
            every=reconcile.RECONCILE_EVERY,
        )
        alertpath.register(
            "opsconsole.dead_mans_switch", "opsconsole.alertpath.ping_dead_mans_switch", every=30
        )
        for model in approval_models():
            leases.register(
                model._meta.label,
                running=model.RUNNING_STATES,
                handler=lambda request: request.on_lease_expired(),
            )
        reconcile.register_waiting(
            "approvals",
            lambda: (
                reconcile.Waiting(
                    r.decided_at or r.requested_at, func, args, f"{r._meta.label} {r.pk}", r.abandon
                )
                for r, func, args in approved_waiting()
            ),
        )
        status.register("worker", worker_status)
        # Who holds which role (the Approver group above all) changes with two people.
        guarded.register("auth.User", "groups", "user_permissions", "is_superuser")
        dashboard.register(
            dashboard.Panel(
                "worker", "Worker", "opsconsole/panels/worker.html", worker_panel, order=90
            )
        )
        # First on the page: what the person looking has to do.
        dashboard.register(
            dashboard.Panel(
                "needs",
                "Needs you",
                "opsconsole/panels/needs.html",
                lambda request: {"needs": needs.for_request(request)},
                order=0,
            )
        )


def _after_last_app_migrated(sender, **kwargs) -> None:
    """post_migrate is sent once per app; roles must see every app's permissions."""
    # Read models: imported when the signal comes, never at start-up.
    from opsconsole import roles, schedules

    with_models = [c for c in apps.get_app_configs() if c.models_module is not None]
    if sender is with_models[-1]:
        roles.sync()
        schedules.sync()


class OpsAdminConfig(AdminConfig):
    default_site = "opsconsole.sites.OpsAdminSite"
