from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        # These read models: imported once the app registry is ready.
        from deployments.panels import deployments_panel, deployments_status
        from opsconsole import alertpath, dashboard, guarded, roles, routes, status

        status.register("deployments", deployments_status)

        dashboard.register(
            dashboard.Panel(
                "deployments", "Deployments", "deployments/panel.html", deployments_panel,
                order=40, permission="deployments.view_deployment",
            )
        )  # fmt: skip

        routes.register("", "deployments.urls")
        alertpath.register("deployments.watch", "deployments.watch.watch_tick", every=5)
        roles.grant(
            roles.OPERATOR, "deployments.add_rollbackrequest", "deployments.change_rollbackrequest"
        )
        roles.grant(roles.APPROVER, "deployments.add_environment", "deployments.change_environment")
        # Who may roll production back, how, and when: only with a second person.
        # What is probed decides when production is rolled back; the name fills commands.
        guarded.register(
            "deployments.Environment",
            "name", "two_person_rule", "provider", "provider_config", "provider_secret",
            "webhook_secret", "base_url",
            "health_path", "endpoints", "smoke_urls", "probe_requests", "probe_timeout_seconds",
            "error_rate_metric", "error_rate_labels", "rollback_mode", "max_error_rate",
            "max_avg_response_ms", "min_availability", "watch_minutes", "stable_minutes",
            "stable_max_error_rate", "gradual_rollback", "gradual_steps", "gradual_step_seconds",
            # A new environment asks before it rolls back, and needs two people to.
            on_create={"two_person_rule": True, "rollback_mode": "ask"},
        )  # fmt: skip
