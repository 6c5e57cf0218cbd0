from django.contrib import admin
from django.utils.html import format_html

from dr.models import (
    FailoverAction,
    FailoverRun,
    RecoveryDrill,
    RecoveryObjective,
    Runbook,
    RunbookExecution,
    RunbookStep,
    ServiceCheck,
    StepRecord,
)
from opsconsole.approvals import ApprovalAdminMixin

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


@admin.register(RecoveryObjective)
class RecoveryObjectiveAdmin(admin.ModelAdmin):
    list_display = ("target", "rpo", "rto", "drill_every_days")
    actions = ["drill_now"]

    @admin.display(description="Live RPO / target")
    def rpo(self, objective):
        o = objective.summary()
        return format_html(
            '<span class="{}">{} / {} min</span>', o["rpo_css"], o["rpo"], o["rpo_target"]
        )

    @admin.display(description="Measured RTO / target")
    def rto(self, objective):
        o = objective.summary()
        return format_html(
            '<span class="{}">{} / {} min</span>', o["rto_css"], o["rto"], o["rto_target"]
        )

    def has_drill_permission(self, request):
        return request.user.has_perm("opsconsole.run_jobs")

    @admin.action(description="Run a recovery drill now", permissions=["drill"])
    def drill_now(self, request, queryset):
        from django.db import transaction

        from opsconsole.tasks import enqueue

        for objective in queryset:
            transaction.on_commit(
                lambda pk=objective.target_id: enqueue("dr.tasks.drill_target", pk)
            )
        self.message_user(request, f"Queued {queryset.count()} drill(s).")


@admin.register(RecoveryDrill)
class RecoveryDrillAdmin(admin.ModelAdmin):
    list_display = ("target", "status", "started_at", "duration_seconds", "rto_met")
    list_filter = ("status", "target")
    readonly_fields = [f.name for f in RecoveryDrill._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class StepsInline(admin.TabularInline):
    model = RunbookStep
    extra = 1


@admin.register(Runbook)
class RunbookAdmin(admin.ModelAdmin):
    list_display = ("scenario", "owner", "step_count")
    inlines = [StepsInline]
    actions = ["start_execution"]

    @admin.display(description="Steps")
    def step_count(self, runbook):
        return runbook.steps.count()

    def has_start_permission(self, request):
        return request.user.has_perm("opsconsole.acknowledge_incident")

    @admin.action(description="Start working this runbook", permissions=["start"])
    def start_execution(self, request, queryset):
        for runbook in queryset:
            execution = runbook.start(request.user)
            self.log_addition(request, execution, "Started")
        self.message_user(request, "Started; check the steps off under Runbook executions.")


class RecordsInline(admin.TabularInline):
    model = StepRecord
    extra = 0
    fields = ("step", "done_by", "done_at", "notes")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(RunbookExecution)
class RunbookExecutionAdmin(admin.ModelAdmin):
    list_display = ("runbook", "incident", "started_by", "started_at", "finished_at")
    readonly_fields = ("runbook", "incident", "started_by", "started_at", "finished_at")
    inlines = [RecordsInline]

    def has_add_permission(self, request):
        return False


@admin.register(FailoverAction)
class FailoverActionAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "automatic")
    fields = ("name", "kind", "config", "secret", "automatic")
    actions = ["request_run"]

    def has_request_permission(self, request):
        return request.user.has_perm(FailoverRun.REQUEST_PERMISSION)

    @admin.action(description="Request to run it", permissions=["request"])
    def request_run(self, request, queryset):
        for action in queryset:
            run = action.request(request.user, reason=f"requested by {request.user}")
            self.log_addition(request, run, "Requested")
            self.message_user(request, f"{action}: {run.get_status_display().lower()}")


@admin.register(FailoverRun)
class FailoverRunAdmin(ApprovalAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "status", "requested_by", "decided_by", "requested_at")
    readonly_fields = (
        "action",
        "reason",
        "status",
        "requested_by",
        "decided_by",
        "decided_at",
        "result",
        "error",
    )
    fields = readonly_fields

    def has_add_permission(self, request):
        return False
