from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"

    def ready(self) -> None:
        # These read models: imported once the app registry is ready.
        from backups.backup import lease_expired
        from backups.models import Backup
        from backups.panels import backup_metrics, backups_panel, backups_status
        from opsconsole import (
            dashboard,
            guarded,
            leases,
            metrics,
            reconcile,
            roles,
            schedules,
            status,
        )

        status.register("backups", backups_status)
        metrics.register("backups", backup_metrics)

        dashboard.register(
            dashboard.Panel(
                "backups", "Backups", "backups/panel.html", backups_panel, order=30,
                permission="backups.view_backup",
            )
        )  # fmt: skip

        # Replacing a production database needs two people; so does saying it is not one.
        # The checks run SQL with the target's credentials: a second person reads them first.
        guarded.register(
            "backups.DatabaseTarget",
            "production",
            "check_queries",
            "dsn",
            on_create={"production": True},
        )
        # A running backup holds a lease; a queued one waits for its task. The
        # reconciler settles either when the worker that should run it is gone.
        leases.register("backups.Backup", running=(Backup.Status.RUNNING,), handler=lease_expired)
        reconcile.register_waiting("backups", queued_backups)
        # What a failed backup left in storage, until its removal succeeds.
        schedules.register("backups.clean_up", "backups.tasks.clean_up", cron="*/10 * * * *")
        schedules.register(
            "backups.wal_archives", "backups.tasks.check_wal_archives", cron="*/5 * * * *"
        )
        schedules.register(
            "backups.verify_newest", "backups.tasks.verify_newest", cron="30 5 * * *"
        )
        schedules.register("backups.prune", "backups.tasks.prune", cron="45 5 * * *")
        schedules.register("backups.metrics", "backups.tasks.record_all_metrics", cron="* * * * *")
        roles.grant(roles.OPERATOR, "backups.add_restorerequest", "backups.change_restorerequest")
        roles.grant(
            roles.APPROVER,
            *(
                f"backups.{verb}_{model}"
                for verb in ("add", "change")
                for model in ("databasetarget", "storagelocation", "backuppolicy", "walarchive")
            ),
        )


def queued_backups():
    """Queued backups, each waiting for its `run_backup` task."""
    from django.utils import timezone

    from backups.models import Backup
    from opsconsole.reconcile import Waiting

    for pk, created in Backup.objects.filter(status=Backup.Status.QUEUED).values_list(
        "pk", "created_at"
    ):
        yield Waiting(
            created,
            "backups.tasks.run_backup",
            (pk,),
            f"backup {pk}",
            lambda message, pk=pk: Backup.objects.filter(pk=pk, status=Backup.Status.QUEUED).update(
                status=Backup.Status.FAILED, finished_at=timezone.now(), error=message
            ),
        )
