from django.contrib import admin
from django.utils.html import format_html

from dr.models import ServiceCheck

CSS = {"healthy": "state-ok", "degraded": "state-warn", "unhealthy": "state-bad"}


@admin.register(ServiceCheck)
class ServiceCheckAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "kind",
        "state_badge",
        "last_latency_ms",
        "last_checked_at",
        "parent",
        "enabled",
    )
    list_filter = ("kind", "state", "enabled")
    readonly_fields = (
        "state",
        "consecutive_failures",
        "consecutive_successes",
        "last_checked_at",
        "last_latency_ms",
        "last_error",
        "next_due_at",
    )
    fields = (
        "name",
        "kind",
        "config",
        "secret",
        "interval_seconds",
        "timeout_seconds",
        "retries",
        "parent",
        "runbook_url",
        "enabled",
        *readonly_fields,
    )

    @admin.display(description="State")
    def state_badge(self, check):
        return format_html(
            '<span class="{}">{}</span>', CSS.get(check.state, ""), check.get_state_display()
        )
