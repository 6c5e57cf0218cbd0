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
        from alerts.notify import lease_expired
        from alerts.panels import (
            alert_metrics,
            incidents_panel,
            incidents_status,
            notifications_due,
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

        status.register("incidents", incidents_status, degrades=bool)
        metrics.register("alerts", alert_metrics)
        metrics.register_queue("notifications", notifications_due)

        routes.register("", "alerts.urls")
        # Where a channel delivers (a webhook URL, the numbers paged): not redirected alone.
        guarded.register("alerts.Channel", "kind", "enabled", "config", "secret")
        # The alert path (`manage.py alertpath`): a breach becomes a page within the rule's
        # `for` plus a second or two, whatever the jobs workers are doing.
        leases.register(
            "alerts.Notification", running=("sending",), handler=lease_expired, since="claimed_at"
        )
        alertpath.register("alerts.sources", "alerts.metrics.collect_due", every=1)
        alertpath.register("alerts.rules", "alerts.evaluation.evaluate_all", every=1)
        alertpath.register("alerts.escalate", "alerts.incidents.escalate_due", every=1)
        alertpath.register("alerts.deliver", "alerts.notify.delivery_tick", every=1)
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
