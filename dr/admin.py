"""Disaster recovery in the admin: checks and their availability report, objectives and
drills, runbooks and their execution pages, failover actions and their runs."""

import csv
from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from alerts.models import Incident
from dr.models import (
    FailoverAction,
    FailoverRun,
    RecoveryDrill,
    RecoveryObjective,
    Runbook,
    RunbookExecution,
    RunbookStep,
    ServiceCheck,
    availability_report,
)
from opsconsole import permissions
from opsconsole.approvals.admin import ApprovalAdminMixin
from opsconsole.tasks import enqueue


@admin.register(ServiceCheck)
class ServiceCheckAdmin(admin.ModelAdmin):
    change_form_template = "admin/dr/servicecheck/change_form.html"
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
        "runbook",
        "enabled",
        "public",
        *readonly_fields,
    )

    change_list_template = "admin/dr/servicecheck/change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "availability/", view(self.availability_view), name="dr_servicecheck_availability"
            ),
            *super().get_urls(),
        ]

    def availability_view(self, request):
        """The monthly availability report, as a page or as CSV (?format=csv)."""

        if not self.has_view_permission(request):
            raise PermissionDenied
        month = request.GET.get("month") or None
        try:
            start, end, rows = availability_report(month)
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
            return HttpResponseRedirect(reverse("admin:dr_servicecheck_availability"))
        label = f"{start:%Y-%m}"
        if request.GET.get("format") == "csv":
            response = HttpResponse(content_type="text/csv")
            response["Content-Disposition"] = f'attachment; filename="availability-{label}.csv"'
            columns = ["check", "availability", "results", "failed", "downtime_minutes",
                       "excluded", "maintenance_minutes"]  # fmt: skip
            writer = csv.DictWriter(response, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
            return response
        previous = (start - timedelta(days=1)).strftime("%Y-%m")
        context = {
            **self.admin_site.each_context(request),
            "title": f"Availability in {start:%B %Y}",
            "opts": self.model._meta,
            "rows": rows,
            "month": label,
            "previous": previous,
            "next": None if end > timezone.now() else f"{end:%Y-%m}",
        }
        return TemplateResponse(request, "admin/dr/servicecheck/availability.html", context)

    @admin.display(description="State")
    def state_badge(self, check):
        return format_html(
            '<span class="{}">{}</span>',
            ServiceCheck.STATE_CSS.get(check.state, ""),
            check.get_state_display(),
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
            '<span class="{}">{} / {} min</span><br><small>{}</small>',
            o["rto_css"], o["rto"], o["rto_target"], o["rto_phases"],
        )  # fmt: skip

    def has_drill_permission(self, request):
        return request.user.has_perm(permissions.RUN_JOBS)

    @admin.action(description="Run a recovery drill now", permissions=["drill"])
    def drill_now(self, request, queryset):
        for objective in queryset:
            transaction.on_commit(
                lambda pk=objective.target_id: enqueue("dr.tasks.drill_target", pk)
            )
        self.message_user(request, f"Queued {queryset.count()} drill(s).")


@admin.register(RecoveryDrill)
class RecoveryDrillAdmin(admin.ModelAdmin):
    list_display = ("target", "status", "started_at", "duration_seconds", "phases", "rto_met")
    list_filter = ("status", "target")
    readonly_fields = [f.name for f in RecoveryDrill._meta.fields] + ["phases"]

    @admin.display(description="Time per phase")
    def phases(self, drill):
        return drill.phases()

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class StepsInline(admin.TabularInline):
    model = RunbookStep
    extra = 1
    fields = ("position", "text", "action")


@admin.register(Runbook)
class RunbookAdmin(admin.ModelAdmin):
    list_display = ("scenario", "owner", "step_count")
    inlines = [StepsInline]
    actions = ["start_execution"]

    @admin.display(description="Steps")
    def step_count(self, runbook):
        return runbook.steps.count()

    def has_start_permission(self, request):
        return request.user.has_perm(permissions.WORK_RUNBOOKS)

    @admin.action(description="Start working this runbook", permissions=["start"])
    def start_execution(self, request, queryset):
        execution = None
        for runbook in queryset:
            execution = runbook.start(request.user)
            self.log_addition(request, execution, "Started")
        if queryset.count() == 1 and execution is not None:
            return HttpResponseRedirect(
                reverse("admin:dr_runbookexecution_change", args=[execution.pk])
            )
        self.message_user(request, "Started; check the steps off under Runbook executions.")


@admin.register(RunbookExecution)
class RunbookExecutionAdmin(admin.ModelAdmin):
    """Work a runbook: the change page lists the steps, each checked off with its own form."""

    list_display = ("runbook", "incident", "started_by", "started_at", "finished_at")

    def get_queryset(self, request):
        # `in_progress` (does the list follow?) reads each row's step runs.
        return super().get_queryset(request).prefetch_related("records__run")

    readonly_fields = ("runbook", "incident", "started_by", "started_at", "finished_at")
    change_form_template = "admin/dr/runbookexecution/change_form.html"

    def has_add_permission(self, request):
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("start/", view(self.start_view), name="dr_runbookexecution_start"),
            path(
                "<int:pk>/steps/<int:step_pk>/",
                view(require_POST(self.step_view)),
                name="dr_runbookexecution_step",
            ),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        execution = self.get_object(request, object_id)
        rows = []
        if execution is not None:
            records = {
                r.step_id: r
                for r in execution.records.select_related("done_by", "run", "run__action")
            }
            for step in execution.runbook.steps.select_related("action"):
                record = records.get(step.pk)
                run = record.run if record else None
                rows.append(
                    {
                        "step": step,
                        "record": record,
                        "run": run,
                        "run_css": FailoverRun.STATUS_CSS.get(run.status, "state-warn")
                        if run
                        else "",
                        "can_do": record is None
                        or (step.action_id and run is not None and run.status in run.RETRYABLE),
                    }
                )
        extra_context = {
            **(extra_context or {}),
            "steps": rows,
            "can_work": request.user.has_perm(permissions.WORK_RUNBOOKS),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def step_view(self, request, pk, step_pk):
        execution = get_object_or_404(RunbookExecution, pk=pk)
        step = get_object_or_404(RunbookStep, pk=step_pk)
        try:
            record = execution.check_off(step, request.user, request.POST.get("notes", "").strip())
        except ValidationError as exc:
            self.message_user(request, " ".join(exc.messages), messages.ERROR)
        else:  # PermissionDenied becomes a 403 page
            self.log_change(request, execution, f"Step {step.position} done")
            done = f"Step {step.position} done."
            if record.run is not None:
                done += f" {record.run.action}: {record.run.get_status_display().lower()}."
            self.message_user(request, done)
        return HttpResponseRedirect(reverse("admin:dr_runbookexecution_change", args=[pk]))

    def start_view(self, request):
        """Start working a runbook, by hand or for an incident (its check's runbook suggested)."""
        if not request.user.has_perm(permissions.WORK_RUNBOOKS):
            raise PermissionDenied
        source = request.POST if request.method == "POST" else request.GET
        incident = None
        if str(source.get("incident", "")).isdigit():
            incident = get_object_or_404(Incident, pk=int(source["incident"]))
        if request.method == "POST":
            runbook = get_object_or_404(Runbook, pk=request.POST.get("runbook") or 0)
            execution = runbook.start(request.user, incident=incident)
            self.log_addition(request, execution, "Started")
            return HttpResponseRedirect(
                reverse("admin:dr_runbookexecution_change", args=[execution.pk])
            )
        suggested = None
        if incident is not None:
            suggested = Runbook.objects.filter(
                scenario=(incident.details or {}).get("runbook") or ""
            ).first()
        context = {
            **self.admin_site.each_context(request),
            "title": "Work a runbook",
            "opts": self.model._meta,
            "incident": incident,
            "runbooks": Runbook.objects.all(),
            "suggested": suggested,
        }
        return TemplateResponse(request, "admin/dr/runbookexecution/start.html", context)


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
