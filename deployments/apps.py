from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        # These read models: imported once the app registry is ready.
        from deployments.panels import deployments_panel, deployments_status
        from opsconsole import dashboard, roles, routes, schedules, status

        status.register("deployments", deployments_status)

        dashboard.register(
            dashboard.Panel(
                "deployments", "Deployments", "deployments/panel.html", deployments_panel,
                order=40, permission="deployments.view_deployment",
            )
        )  # fmt: skip

        routes.register("", "deployments.urls")
        schedules.register("deployments.watch", "deployments.tasks.watch", cron="* * * * * */30")
        roles.grant(
            roles.OPERATOR, "deployments.add_rollbackrequest", "deployments.change_rollbackrequest"
        )
        roles.grant(roles.APPROVER, "deployments.add_environment", "deployments.change_environment")
