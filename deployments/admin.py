"""Deployments in the admin: presents and asks; the models and the deployments modules decide."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from deployments.models import (
    DeployApproval,
    Deployment,
    Environment,
    EnvironmentVariable,
    GateCheck,
    GitHubApp,
    HealthSample,
    RollbackRequest,
    TemplateDefault,
    TemplateVariable,
    VariableSyncRequest,
    VariableTemplate,
)
from deployments.providers import ProviderError
from deployments.rollbacks import request_rollback
from deployments.variables import MAX_DOTENV_BYTES, DotenvError, parse_dotenv
from opsconsole import permissions
from opsconsole.approvals.admin import ApprovalAdminMixin
from opsconsole.charts import sparkline


class VariablesInline(admin.TabularInline):
    model = EnvironmentVariable
    extra = 1
    fields = ("name", "value")


@admin.register(Environment)
class EnvironmentAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "provider",
        "base_url",
        "rollback_mode",
        "two_person_rule",
        "require_deploy_approval",
        "drift_badge",
    )
    inlines = [VariablesInline]
    actions = ["validate_variables", "sync_variables"]
    change_form_template = "admin/deployments/environment/change_form.html"
    readonly_fields = ("variables_state",)

    @admin.display(description="Variables")
    def drift_badge(self, env):
        drift = env.variables_drift or {}
        names = sorted(n for names in drift.values() for n in names)
        if names:
            return format_html('<span class="state-bad">drift: {}</span>', ", ".join(names))
        if env.drift_checked_at:
            return format_html('<span class="state-ok">{}</span>', "as set")
        return "not checked yet"

    @admin.display(description="State on the provider")
    def variables_state(self, env):
        if env.pk is None:
            return "-"
        drift = env.variables_drift or {}
        rows = [
            (label, ", ".join(drift.get(key) or []))
            for key, label in (("changed", "Changed"), ("added", "Added"), ("removed", "Removed"))
            if drift.get(key)
        ]
        checked = (
            f"checked {env.drift_checked_at:%Y-%m-%d %H:%M:%S} UTC"
            if env.drift_checked_at
            else "not checked yet"
        )
        if not rows:
            return format_html(
                '<p class="variables-drift state-ok">No drift: the provider holds what the '
                "console last set or saw ({}).</p>",
                checked,
            )
        return format_html(
            '<div class="variables-drift"><p class="state-bad">Changed on the provider behind '
            "the console's back ({}):</p><ul>{}</ul><p>Import from the provider to keep its "
            "values, or sync the variables to put the console's back.</p></div>",
            checked,
            format_html_join("", "<li>{}: {}</li>", rows),
        )

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/variables/<str:what>/",
                view(self.variables_view),
                name="deployments_environment_variables",
            ),
            *super().get_urls(),
        ]

    def variables_view(self, request, pk: int, what: str):
        """POST only: import a .env upload or the provider's values, apply the template's
        defaults, or check drift now. The model decides who may."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        env = get_object_or_404(Environment, pk=pk)
        if not self.has_view_permission(request, env):
            raise PermissionDenied
        back = HttpResponseRedirect(reverse("admin:deployments_environment_change", args=[pk]))
        try:
            if what in ("dotenv", "provider", "defaults") and not request.user.has_perm(
                "deployments.change_environment"
            ):
                raise PermissionDenied("You may not change this environment's variables.")
            if what == "dotenv":
                upload = request.FILES.get("dotenv")
                if upload is None:
                    raise ValidationError("Choose a .env file to import.")
                if upload.size > MAX_DOTENV_BYTES:
                    raise DotenvError(f"the file is over {MAX_DOTENV_BYTES // 1024} KB")
                changed = env.import_variables(
                    parse_dotenv(upload.read()), request.user, source=".env upload"
                )
                done = f"Imported {len(changed)} variable(s) from the file: {', '.join(changed)}"
            elif what == "provider":
                changed = env.import_from_provider(request.user)
                done = (
                    f"Imported {len(changed)} variable(s) from {env.backend.label}: "
                    f"{', '.join(changed) or 'none differed'}"
                )
            elif what == "defaults":
                changed = env.apply_template_defaults(request.user)
                done = (
                    f"Gave {len(changed)} variable(s) their template default: {', '.join(changed)}"
                )
            elif what == "drift":
                if not request.user.has_perm(permissions.RUN_JOBS):
                    raise PermissionDenied("You may not run checks.")
                found = env.check_drift()
                done = (
                    f"{env.backend.label} cannot list variables."
                    if found is None
                    else f"Drift: {found.describe()}"
                    if found
                    else "No drift."
                )
            else:
                raise ValidationError(f"Unknown variables action {what!r}.")
        except (ValidationError, DotenvError) as exc:
            self.message_user(request, getattr(exc, "messages", [str(exc)])[0], messages.ERROR)
        except ProviderError as exc:
            self.message_user(request, f"{env}: {exc.message}", messages.ERROR)
        except PermissionDenied as exc:
            self.message_user(request, str(exc) or "You may not do that.", messages.ERROR)
        else:
            self.log_change(request, env, done)
            self.message_user(request, done, messages.SUCCESS)
        return back

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_edit_variables": request.user.has_perm("deployments.change_environment"),
            "can_check_drift": request.user.has_perm(permissions.RUN_JOBS),
        }
        return super().change_view(request, object_id, form_url, extra_context)

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
        ("Checks", {"fields": ("health_path", "endpoints", "smoke_urls")}),
        (
            "Variables",
            {"fields": ("variable_template", "required_variables", "variables_state")},
        ),
        ("Webhooks and approval", {"fields": ("webhook_secret", "two_person_rule")}),
        ("Deploy gate", {"fields": ("require_deploy_approval", "components")}),
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


class RollbackConfirmForm(forms.Form):
    reason = forms.CharField(
        label="Why",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What you saw: the approver and the timeline read it.",
        error_messages={"required": "Say why: the approver decides on it."},
    )


@admin.register(Deployment)
class DeploymentAdmin(admin.ModelAdmin):
    list_display = (
        "version",
        "environment",
        "now",
        "status_badge",
        "external_id",
        "started_by",
        "received_at",
        "ended_at",
    )
    list_filter = ("environment", "status")
    search_fields = ("version", "external_id", "commit")
    inlines = [SamplesInline]
    actions = ["request_rollback"]
    # The page shows the deployment in its own sections (facts, timeline, related); the
    # form keeps only the watch's charts.
    fields = readonly_fields = ["health_chart"]
    change_form_template = "admin/deployments/deployment/change_form.html"

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

    def get_queryset(self, request):
        return Deployment.with_situation(
            super().get_queryset(request).select_related("environment")
        )

    def get_changelist_instance(self, request):
        # What is live, asked once per environment on the page rather than once per row.
        changelist = super().get_changelist_instance(request)
        live: dict[int, Deployment | None] = {}
        for deployment in changelist.result_list:
            env = deployment.environment
            if env.pk not in live:
                live[env.pk] = env.live_deployment()
            deployment.live_now = live[env.pk]
        return changelist

    @admin.display(description="Now")
    def now(self, deployment):
        if not hasattr(deployment, "live_now"):
            deployment.live_now = deployment.environment.live_deployment()
        live = deployment.live_now
        situation = deployment.situation(live)
        if live is not None and live.pk == deployment.pk:
            return format_html('<span class="badge badge-ok">Active</span> {}', situation)
        return situation or "—"

    @admin.display(description="Status")
    def status_badge(self, deployment):
        css = Deployment.STATUS_CSS.get(deployment.status, "")
        return format_html('<span class="{}">{}</span>', css, deployment.get_status_display())

    @admin.action(description="Roll back to this version…", permissions=["request_rollback"])
    def request_rollback(self, request, queryset):
        """Nothing runs from the list: the ticked version opens the confirmation page."""
        if queryset.count() != 1:
            self.message_user(
                request, "Tick the one version to roll back to (or the live one).", messages.ERROR
            )
            return None
        return HttpResponseRedirect(
            reverse("admin:deployments_deployment_rollback", args=[queryset.get().pk])
        )

    def get_urls(self):
        view = self.admin_site.admin_view(self.rollback_view)
        return [
            path("<int:pk>/rollback/", view, name="deployments_deployment_rollback"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_request_rollback": self.has_request_rollback_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def rollback_view(self, request, pk: int):
        """Confirm a rollback: which version, what it did while live, what cannot be undone,
        and why. The ticked version is the target; ticking the live one proposes the
        newest stable one before it."""
        chosen = get_object_or_404(Deployment.objects.select_related("environment"), pk=pk)
        if not self.has_request_rollback_permission(request):
            raise PermissionDenied("You may not request rollbacks.")
        env = chosen.environment
        # What serves now, the provider's word first: never propose what already serves.
        live = env.live_state().deployment or env.live_deployment()
        candidates = env.rollback_candidates(live)
        stable = env.stable_target(before=live)
        if stable is not None and stable not in candidates:
            candidates.append(stable)
        problem = ""
        if chosen == live:
            target = stable
        elif chosen in candidates:
            target = chosen
        else:
            target = None
            problem = (
                f"{chosen.version} is {chosen.get_status_display().lower()}: not a version to "
                "go back to. Pick one below."
            )
        if "target" in request.GET or "target" in request.POST:
            wanted = request.POST.get("target") or request.GET.get("target")
            target = next((c for c in candidates if str(c.pk) == wanted), None)
            problem = "" if target else "That version is not one to go back to; pick one below."
        form = RollbackConfirmForm(request.POST or None)
        if target is not None and request.method == "POST" and form.is_valid():
            try:
                rollback = request_rollback(
                    env, request.user, reason=form.cleaned_data["reason"], target=target,
                    from_deployment=live,
                )  # fmt: skip
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                self.log_addition(request, rollback, "Requested")
                self.message_user(
                    request, f"Rollback of {env} to {target.version} requested.", messages.SUCCESS
                )
                return HttpResponseRedirect(
                    reverse("admin:deployments_rollbackrequest_change", args=[rollback.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "title": f"Roll back {env}",
            "opts": self.model._meta,
            "deployment": chosen,
            "target": target,
            "facts": RollbackRequest.describe(env, live, target) if target else [],
            "others": [(c, c.track_record()) for c in candidates if c != target],
            "problem": problem,
            "form": form,
        }
        return TemplateResponse(request, "admin/deployments/deployment/rollback.html", context)


@admin.register(RollbackRequest)
class RollbackRequestAdmin(ApprovalAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "status", "how", "requested_by", "decided_by", "requested_at")
    list_filter = ("status", "environment", "automatic")
    readonly_fields = (
        "environment",
        "from_deployment",
        "target_deployment",
        "reason",
        "how",
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

    @admin.display(description="Decided", ordering="automatic")
    def how(self, rollback):
        return "automatically, by the environment's policy" if rollback.automatic else "by people"


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


class TemplateVariablesInline(admin.TabularInline):
    model = TemplateVariable
    extra = 1
    fields = ("name", "description", "kind", "rule", "required")


class TemplateDefaultsInline(admin.TabularInline):
    model = TemplateDefault
    extra = 1
    fields = ("name", "environment", "value")
    verbose_name_plural = "Starting values (per environment, or for every one)"


@admin.register(VariableTemplate)
class VariableTemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "description")
    inlines = [TemplateVariablesInline, TemplateDefaultsInline]


@admin.register(GateCheck)
class GateCheckAdmin(admin.ModelAdmin):
    list_display = ("at", "environment", "version", "answer_badge", "reasons_in_words", "asked_by")
    list_filter = ("answer", "environment", "source")
    search_fields = ("version", "commit", "asked_by")

    def get_fields(self, request, obj=None):
        # What this check had: a GitHub question's callback state, a wait's retry time.
        if obj is None:
            return self.fields
        shown = [
            f
            for f in self.fields
            if not f.startswith("github_")
            and f not in ("retry_after", "approval", "backup", "answered_at")
        ]
        shown += [f for f in ("retry_after", "approval", "backup") if getattr(obj, f)]
        if obj.source == GateCheck.Source.GITHUB:
            shown += ["answered_at", *(f for f in self.fields if f.startswith("github_"))]
        return shown

    fields = (
        "answer_badge",
        "reasons_in_words",
        "environment",
        "version",
        "commit",
        "pipeline_url",
        "asked_by",
        "source",
        "at",
        "retry_after",
        "approval",
        "backup",
        "answered_at",
        "github_repository",
        "github_environment",
        "github_state",
        "github_error",
    )
    readonly_fields = fields

    @admin.display(description="Answer")
    def answer_badge(self, check):
        return format_html(
            '<span class="{} gate-answer">{}</span>',
            GateCheck.ANSWER_CSS.get(check.answer, ""),
            check.get_answer_display(),
        )

    @admin.display(description="Why")
    def reasons_in_words(self, check):
        if not check.reasons:
            return "every check passed"
        return format_html(
            '<ul class="gate-reasons" style="margin-left:0;padding-left:1.2em">{}</ul>',
            format_html_join(
                "",
                "<li>{} <code>{}</code></li>",
                ((r["message"], r["code"]) for r in check.reasons),
            ),
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(DeployApproval)
class DeployApprovalAdmin(ApprovalAdminMixin, admin.ModelAdmin):
    list_display = ("__str__", "status", "requested_by", "decided_by", "requested_at")
    list_filter = ("status", "environment")
    readonly_fields = (
        "environment",
        "version",
        "commit",
        "pipeline_url",
        "reason",
        "status",
        "requested_by",
        "requested_by_token",
        "requested_at",
        "decided_by",
        "decided_at",
        "decision_note",
    )
    fields = readonly_fields

    def has_add_permission(self, request):
        return False


@admin.register(GitHubApp)
class GitHubAppAdmin(admin.ModelAdmin):
    list_display = ("name", "app_id", "api_url")
    fields = (
        "name", "app_id", "private_key", "webhook_secret", "api_url", "environments",
        "repositories", "people",
    )  # fmt: skip
