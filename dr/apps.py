from django.apps import AppConfig


class DrConfig(AppConfig):
    name = "dr"
    verbose_name = "Disaster recovery"

    def ready(self) -> None:
        # These read models: imported once the app registry is ready.
        from dr import drills
        from dr.panels import (
            any_unhealthy,
            check_metrics,
            checks_status,
            health_panel,
            objectives_panel,
            overdue_checks_trouble,
        )
        from opsconsole import (
            alertpath,
            dashboard,
            guarded,
            leases,
            metrics,
            roles,
            routes,
            schedules,
            status,
        )

        status.register("checks", checks_status, degrades=any_unhealthy)

        dashboard.register(
            dashboard.Panel("health", "Service health", "dr/panel.html", health_panel, order=20)
        )
        dashboard.register(
            dashboard.Panel(
                "objectives",
                "Recovery objectives",
                "dr/objectives_panel.html",
                objectives_panel,
                order=25,
            )
        )

        routes.register("", "dr.urls")
        # What an action runs or calls, and whether it runs without anyone approving.
        guarded.register(
            "dr.FailoverAction",
            "automatic",
            "kind",
            "config",
            "secret",
            on_create={"automatic": False},
        )

        # Each check on its own cadence (interval, retry interval), to the second.
        alertpath.register("dr.checks", "dr.health.tick", every=1)
        # A check hanging past its timeout keeps the loop ticking but stops that check:
        # it counts against the alert path's health, and shows in /metrics.
        alertpath.register_trouble("dr.checks", overdue_checks_trouble)
        metrics.register("dr", check_metrics)
        leases.register("dr.RecoveryDrill", running=("running",), handler=drills.lease_expired)
        schedules.register("dr.prune_results", "dr.tasks.prune_results", cron="40 4 * * *")
        schedules.register("dr.check_objectives", "dr.tasks.check_objectives", cron="5 * * * *")
        schedules.register("dr.monthly_drills", "dr.tasks.monthly_drills", cron="0 5 1 * *")
        roles.grant(
            roles.OPERATOR,
            "dr.add_recoveryobjective",
            "dr.change_recoveryobjective",
            "dr.add_runbook",
            "dr.change_runbook",
            "dr.add_runbookstep",
            "dr.change_runbookstep",
        )
        roles.grant(
            roles.APPROVER,
            "dr.add_servicecheck",
            "dr.change_servicecheck",
            "dr.add_failoveraction",
            "dr.change_failoveraction",
        )
