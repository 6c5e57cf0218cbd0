from django.apps import AppConfig


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Deployments"

    def ready(self) -> None:
        # These read models: imported once the app registry is ready.
        from deployments.panels import deployments_panel, deployments_status
        from opsconsole import alertpath, dashboard, guarded, roles, routes, schedules, status

        status.register("deployments", deployments_status)

        dashboard.register(
            dashboard.Panel(
                "deployments", "Environments", "deployments/panel.html", deployments_panel,
                order=15, permission="deployments.view_deployment",
            )
        )  # fmt: skip

        routes.register("", "deployments.urls")
        schedules.register(
            "deployments.variable_drift", "deployments.tasks.check_variable_drift",
            cron="*/15 * * * *",
        )  # fmt: skip
        schedules.register(
            "deployments.live_versions", "deployments.tasks.observe_live_versions",
            cron="* * * * *",
        )  # fmt: skip
        schedules.register(
            "deployments.recheck_gates", "deployments.tasks.recheck_waiting_gates",
            cron="* * * * *",
        )  # fmt: skip
        alertpath.register("deployments.watch", "deployments.watch.watch_tick", every=5)
        roles.grant(
            roles.OPERATOR, "deployments.add_rollbackrequest", "deployments.change_rollbackrequest"
        )
        roles.grant(roles.APPROVER, "deployments.add_environment", "deployments.change_environment")
        # An environment's variables and the templates they follow: edited with it.
        roles.grant(roles.APPROVER, *(
            f"deployments.{verb}_{model}" for verb in ("add", "change", "delete")
            for model in ("environmentvariable", "variabletemplate", "templatevariable",
                          "templatedefault")
        ))  # fmt: skip
        # Which App answers GitHub, with which key, against which API: two people.
        guarded.register(
            "deployments.GitHubApp", "app_id", "private_key", "webhook_secret", "api_url",
            "environments", "repositories", "people",
        )  # fmt: skip
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
            "require_deploy_approval", "components",
            # A new environment asks before it rolls back, and needs two people to.
            on_create={"two_person_rule": True, "rollback_mode": "ask"},
        )  # fmt: skip
