"""Deployments in the admin: presents and asks; the models and the deployments modules decide."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.html import format_html

from deployments.models import (
    Deployment,
    DeploymentCheck,
    Environment,
    EnvironmentVariable,
    HealthSample,
    RollbackRequest,
    VariableSyncRequest,
)
from deployments.providers import ProviderError
from deployments.rollbacks import request_rollback
from opsconsole.approvals.admin import ApprovalAdminMixin
from opsconsole.charts import sparkline


class VariablesInline(admin.TabularInline):
    model = EnvironmentVariable
    extra = 1
    fields = ("name", "value")


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = ("name", "provider", "base_url", "rollback_mode", "two_person_rule")
    inlines = [VariablesInline]
    actions = ["validate_variables", "sync_variables"]

    @admin.action(
        description="Validate variables against the provider (names only)", permissions=["sync"]
    )
    def validate_variables(self, request, queryset):
        for env in queryset:
            try:
                diff = env.variable_diff()
            except ProviderError as exc:
                self.message_user(request, f"{env}: {exc.message}", messages.ERROR)
                continue
            if not any(diff.values()):
                self.message_user(
                    request, f"{env}: the provider has every variable, with the same values."
                )
                continue
            parts = [f"{k}: {', '.join(v)}" for k, v in diff.items() if v]
            self.message_user(request, f"{env}: " + "; ".join(parts), messages.WARNING)

    def has_sync_permission(self, request):
        return request.user.has_perm(VariableSyncRequest.REQUEST_PERMISSION)

    @admin.action(description="Sync variables to the provider", permissions=["sync"])
    def sync_variables(self, request, queryset):
        for env in queryset:
            try:
                sync = env.request_variable_sync(request.user)
            except (ProviderError, PermissionDenied) as exc:
                self.message_user(request, f"{env}: {getattr(exc, 'message', exc)}", messages.ERROR)
                continue
            if sync.status == "requested":
                self.message_user(
                    request, f"{env}: sync requested; a second person must approve it."
                )
            else:
                self.message_user(
                    request, f"{env}: sync {sync.get_status_display().lower()}. {sync.error}"
                )

    fieldsets = (
        (None, {"fields": ("name", "provider", "provider_config", "provider_secret", "base_url")}),
        ("Checks", {"fields": ("health_path", "endpoints", "smoke_urls", "required_variables")}),
        ("Webhooks and approval", {"fields": ("webhook_secret", "two_person_rule")}),
        (
            "Rollback policy",
            {
                "fields": (
                    "rollback_mode",
                    "watch_minutes",
                    "max_error_rate",
                    "max_avg_response_ms",
                    "min_availability",
                    "stable_minutes",
                    "stable_max_error_rate",
                    "probe_requests",
                    "probe_timeout_seconds",
                    "error_rate_metric",
                    "error_rate_labels",
                )
            },
        ),
        (
            "Gradual rollback",
            {"fields": ("gradual_rollback", "gradual_steps", "gradual_step_seconds")},
        ),
        (
            "Database before a deploy",
            {"fields": ("backup_target", "backup_max_age_hours", "backup_before_deploy")},
        ),
    )
    formfield_overrides = {
        Environment._meta.get_field("base_url").__class__: {"assume_scheme": "https"}
    }


class ChecksInline(admin.TabularInline):
    model = DeploymentCheck
    extra = 0
    can_delete = False
    fields = ("at", "phase", "name", "passed", "detail", "duration_ms")
    readonly_fields = fields
    verbose_name_plural = "Timeline of checks"

    def has_add_permission(self, request, obj=None):
        return False


class SamplesInline(admin.TabularInline):
    model = HealthSample
    extra = 0
    can_delete = False
    fields = (
        "at",
        "requests",
        "error_rate",
        "avg_ms",
        "p95_ms",
        "availability",
        "passed",
        "breach",
    )
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = (
        "version",
        "environment",
        "status_badge",
        "external_id",
        "started_by",
        "received_at",
    )
    list_filter = ("environment", "status")
    search_fields = ("version", "external_id", "commit")
    inlines = [ChecksInline, SamplesInline]
    actions = ["request_rollback"]
    readonly_fields = [*(f.name for f in Deployment._meta.fields), "health_chart"]

    @admin.display(description="Watch")
    def health_chart(self, deployment):
        samples = list(deployment.samples.order_by("at"))
        env = deployment.environment
        return format_html(
            "<div>error rate (%) {}</div><div>average response (ms) {}</div>",
            sparkline(
                [s.error_rate for s in samples], label="error rate", limit=env.max_error_rate
            ),
            sparkline(
                [s.avg_ms for s in samples], label="average ms", limit=env.max_avg_response_ms
            ),
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_request_rollback_permission(self, request):
        return request.user.has_perm(RollbackRequest.REQUEST_PERMISSION)

    @admin.display(description="Status")
    def status_badge(self, deployment):
        css = Deployment.STATUS_CSS.get(deployment.status, "")
        return format_html('<span class="{}">{}</span>', css, deployment.get_status_display())

    @admin.action(
        description="Request a rollback of its environment", permissions=["request_rollback"]
    )
    def request_rollback(self, request, queryset):
        for deployment in queryset:
            try:
                rollback = request_rollback(
                    deployment.environment,
                    request.user,
                    reason=f"requested by {request.user}",
                    from_deployment=deployment,
                )
            except (ValidationError, PermissionDenied) as exc:
                self.message_user(request, getattr(exc, "messages", [str(exc)])[0], messages.ERROR)
                continue
            self.log_addition(request, rollback, "Requested")
            self.message_user(
                request,
                f"Rollback of {deployment.environment} to "
                f"{rollback.target_deployment.version} requested.",
            )


@admin.register(RollbackRequest)
class RollbackRequestAdmin(ApprovalAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "status", "automatic", "requested_by", "decided_by", "requested_at")
    list_filter = ("status", "environment", "automatic")
    readonly_fields = (
        "environment",
        "from_deployment",
        "target_deployment",
        "reason",
        "automatic",
        "status",
        "requested_by",
        "requested_at",
        "decided_by",
        "decided_at",
        "decision_note",
        "warnings",
        "provider_response",
        "error",
        "started_at",
        "finished_at",
    )
    fields = readonly_fields

    def has_add_permission(self, request):
        return False


@admin.register(VariableSyncRequest)
class VariableSyncRequestAdmin(ApprovalAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "status", "requested_by", "decided_by", "requested_at")
    readonly_fields = (
        "environment",
        "names",
        "status",
        "requested_by",
        "decided_by",
        "decided_at",
        "error",
    )
    fields = readonly_fields

    def has_add_permission(self, request):
        return False
