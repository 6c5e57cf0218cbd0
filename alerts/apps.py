from django.apps import AppConfig

# What operators edit in the browser: rules, silences and where alerts go.
EDITABLE = (
    "alertrule",
    "silence",
    "channel",
    "escalationpolicy",
    "escalationlevel",
    "metricsource",
    "prioritypolicy",
)


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts and incidents"

    def ready(self) -> None:
        # These read models: imported once the app registry is ready.
        from alerts.panels import incidents_panel, incidents_status
        from opsconsole import dashboard, guarded, roles, routes, schedules, status

        status.register("incidents", incidents_status, degrades=bool)

        routes.register("", "alerts.urls")
        # Where a channel delivers (a webhook URL, the numbers paged): not redirected alone.
        guarded.register("alerts.Channel", "kind", "enabled", "config", "secret")
        every_tick = "* * * * * */30"
        schedules.register(
            "alerts.collect_sources", "alerts.tasks.collect_sources", cron=every_tick
        )
        schedules.register("alerts.evaluate_rules", "alerts.tasks.evaluate_rules", cron=every_tick)
        schedules.register("alerts.escalate", "alerts.tasks.escalate", cron=every_tick)
        schedules.register(
            "alerts.dispatch", "alerts.tasks.dispatch_notifications", cron=every_tick
        )
        schedules.register("alerts.prune", "alerts.tasks.prune", cron="17 3 * * *")
        roles.grant(
            roles.OPERATOR,
            *(f"alerts.{verb}_{model}" for verb in ("add", "change") for model in EDITABLE),
        )
        roles.grant(roles.APPROVER, *(f"alerts.delete_{model}" for model in EDITABLE))
        # Operators write an incident's public title (the rest of it is read-only).
        roles.grant(roles.OPERATOR, "alerts.change_incident")
        dashboard.register(
            dashboard.Panel(
                "incidents", "Incidents", "alerts/panel.html", incidents_panel, order=10
            )
        )
