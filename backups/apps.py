from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"

    def ready(self) -> None:
        # These read models: imported once the app registry is ready.
        from backups.panels import backups_panel, backups_status
        from opsconsole import dashboard, guarded, roles, schedules, status

        status.register("backups", backups_status)

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
        schedules.register("backups.reap_stalled", "backups.tasks.reap_stalled", cron="*/2 * * * *")
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
                for model in ("databasetarget", "storagelocation", "backuppolicy")
            ),
        )
