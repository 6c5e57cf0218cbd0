from django.apps import AppConfig


class BackupsConfig(AppConfig):
    name = "backups"
    verbose_name = "Backups"

    def ready(self) -> None:
        from opsconsole import roles, schedules

        schedules.register("backups.reap_stalled", "backups.tasks.reap_stalled", cron="*/2 * * * *")
        roles.grant(roles.OPERATOR, "backups.add_backup")
