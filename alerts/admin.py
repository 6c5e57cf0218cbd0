"""Alerts in the admin: presents and asks; the rules live in the models and the door."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from alerts import evaluation, incidents, notify
from alerts.channels import CHANNEL_KINDS
from alerts.models import (
    AlertRule,
    Channel,
    EscalationLevel,
    EscalationPolicy,
    InboxMessage,
    Incident,
    MetricSample,
    MetricSource,
    Notification,
    Priority,
    PriorityPolicy,
    RuleState,
    Silence,
)
from opsconsole import permissions

ACK_PERMISSION = permissions.ACKNOWLEDGE_INCIDENT


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# --- metrics -----------------------------------------------------------------------


@admin.register(MetricSample)
class MetricSampleAdmin(admin.ModelAdmin):
    list_display = ("key", "labels_key", "value", "observed_at")
    list_filter = ("key",)
    search_fields = ("key", "labels_key")
    date_hierarchy = "observed_at"
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(MetricSource)
class MetricSourceAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "metric_key", "enabled", "last_success_at", "short_error")
    list_filter = ("kind", "enabled")
    readonly_fields = ("last_run_at", "last_success_at", "last_error")

    @admin.display(description="Last error")
    def short_error(self, obj):
        return obj.last_error[:80]


# --- rules -------------------------------------------------------------------------


class RuleStateInline(ReadOnlyInline):
    model = RuleState
    fields = (
        "labels_key",
        "state",
        "last_value",
        "active_since",
        "firing_since",
        "last_evaluated_at",
    )
    readonly_fields = fields


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    list_display = ("name", "category", "condition", "priority", "enabled", "state")
    list_filter = ("category", "priority", "enabled")
    search_fields = ("name", "metric_key", "description")
    inlines = [RuleStateInline]
    change_form_template = "admin/alerts/alertrule/change_form.html"
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = (
        (None, {"fields": ("name", "category", "component", "priority", "enabled", "description")}),
        (
            "Condition",
            {
                "fields": (
                    "metric_key",
                    "label_matchers",
                    "aggregation",
                    "window_seconds",
                    "comparator",
                    "threshold",
                    "for_seconds",
                    "keep_firing_seconds",
                    "no_data",
                )
            },
        ),
        ("Message", {"fields": ("message_template", "runbook_url")}),
    )

    @admin.display(description="Condition")
    def condition(self, rule):
        window = f" over {rule.window_seconds}s" if rule.window_seconds else ""
        hold = f" for {rule.for_seconds}s" if rule.for_seconds else ""
        what = f"{rule.aggregation}({rule.metric_key}){window}"
        return f"{what} {rule.comparator} {rule.threshold:g}{hold}"

    @admin.display(description="State")
    def state(self, rule):
        states = {s.state for s in rule.states.all()}
        for name in ("firing", "pending"):
            if name in states:
                return name
        return "ok" if rule.enabled else "disabled"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("states")

    def get_urls(self):
        return [
            path(
                "preview/",
                self.admin_site.admin_view(self.preview_view),
                name="alerts_alertrule_preview",
            ),
            *super().get_urls(),
        ]

    def preview_view(self, request):
        """Evaluate the form as it is typed, without saving: the value now and a 7-day backtest."""
        if request.method != "POST":
            return JsonResponse({"error": "POST the rule form"}, status=405)
        obj = None
        if request.POST.get("_rule_id", "").isdigit():
            obj = AlertRule.objects.filter(pk=int(request.POST["_rule_id"])).first()
        if not (
            self.has_change_permission(request, obj) if obj else self.has_add_permission(request)
        ):
            raise PermissionDenied
        form_class = self.get_form(request, obj, change=obj is not None)
        form = form_class(request.POST, instance=obj)
        if not form.is_valid():
            errors = {field: [str(e) for e in errs] for field, errs in form.errors.items()}
            return JsonResponse({"ok": False, "errors": errors}, status=400)
        rule = form.save(commit=False)
        result = evaluation.preview(rule)
        return JsonResponse({"ok": True, **result})


# --- incidents -------------------------------------------------------------------


class NotificationInline(ReadOnlyInline):
    model = Notification
    fields = (
        "created_at",
        "channel",
        "event",
        "level",
        "status",
        "attempts",
        "http_status",
        "error",
    )
    readonly_fields = fields
    verbose_name_plural = "Who was told (deliveries)"


class SilencedFilter(admin.SimpleListFilter):
    """ "Silenced: yes / no" rather than Django's "By silence: Empty / Not empty"."""

    title = "silenced"
    parameter_name = "silenced"

    def lookups(self, request, model_admin):
        return (("yes", "Silenced"), ("no", "Not silenced"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(silence__isnull=False)
        if self.value() == "no":
            return queryset.filter(silence__isnull=True)
        return queryset


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = (
        "title",
        "priority",
        "status_badge",
        "component",
        "count",
        "opened_at",
        "acknowledged_by",
    )
    list_filter = ("status", "priority", "source", SilencedFilter)
    search_fields = ("title", "fingerprint", "component")
    date_hierarchy = "opened_at"
    inlines = [NotificationInline]
    actions = ["acknowledge_selected", "resolve_selected"]
    change_form_template = "admin/alerts/incident/change_form.html"
    # The page shows the incident in its own sections (change_form.html); the one thing
    # written on it is what the public status page may say.
    fields = ("public_title",)

    def has_add_permission(self, request):
        return False

    def has_acknowledge_permission(self, request, obj=None):
        return request.user.has_perm(ACK_PERMISSION)

    @admin.display(description="Status")
    def status_badge(self, incident):
        label = incident.get_status_display()
        if incident.silenced and incident.is_open:
            label += " (silenced)"
        css = Incident.STATUS_CSS.get(incident.status, "state-ok")
        return format_html('<span class="{}">{}</span>', css, label)

    @admin.action(description="Acknowledge selected incidents", permissions=["acknowledge"])
    def acknowledge_selected(self, request, queryset):
        done = 0
        for incident in queryset.filter(status=Incident.Status.TRIGGERED):
            incidents.acknowledge(incident, request.user)
            self.log_change(request, incident, "Acknowledged")
            done += 1
        self.message_user(request, f"Acknowledged {done} incident(s).")

    @admin.action(description="Resolve selected incidents", permissions=["acknowledge"])
    def resolve_selected(self, request, queryset):
        done = 0
        for incident in queryset.exclude(status=Incident.Status.RESOLVED):
            incidents.resolve_by_hand(incident, request.user, reason=f"resolved by {request.user}")
            self.log_change(request, incident, "Resolved")
            done += 1
        self.message_user(request, f"Resolved {done} incident(s).")

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/acknowledge/",
                view(require_POST(self.acknowledge_view)),
                name="alerts_incident_acknowledge",
            ),
            path(
                "<int:pk>/resolve/",
                view(require_POST(self.resolve_view)),
                name="alerts_incident_resolve",
            ),
            path(
                "<int:pk>/note/",
                view(require_POST(self.note_view)),
                name="alerts_incident_note",
            ),
            *super().get_urls(),
        ]

    def acknowledge_view(self, request, pk):
        incident = get_object_or_404(Incident, pk=pk)
        incidents.acknowledge(incident, request.user)  # PermissionDenied -> 403
        self.log_change(request, incident, "Acknowledged")
        self.message_user(request, f"Acknowledged: {incident.title}")
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
            target = reverse("admin:alerts_incident_change", args=[pk])
        return HttpResponseRedirect(target)

    def resolve_view(self, request, pk):
        incident = get_object_or_404(Incident, pk=pk)
        incidents.resolve_by_hand(
            incident,
            request.user,
            reason=request.POST.get("reason") or f"resolved by {request.user}",
        )
        self.log_change(request, incident, "Resolved")
        self.message_user(request, f"Resolved: {incident.title}")
        return HttpResponseRedirect(reverse("admin:alerts_incident_change", args=[pk]))

    def note_view(self, request, pk):
        incident = get_object_or_404(Incident, pk=pk)
        text = request.POST.get("note", "").strip()
        try:
            incident.add_note(request.user, text)
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, "Note added to the timeline.")
        return HttpResponseRedirect(reverse("admin:alerts_incident_change", args=[pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        incident = self.get_object(request, object_id)
        related = incident.related() if incident is not None else []
        live = next((r for label, r in related if label == "Live deployment"), None)
        extra_context = {
            **(extra_context or {}),
            "can_ack": request.user.has_perm(ACK_PERMISSION),
            "can_silence": request.user.has_perm("alerts.add_silence"),
            "related": related,
            # The incident is about an environment: going back is one click from here.
            "rollback_from": live
            if live is not None and request.user.has_perm(permissions.REQUEST_ROLLBACK)
            else None,
        }
        return super().change_view(request, object_id, form_url, extra_context)


# --- channels and routing --------------------------------------------------------


class ChannelForm(forms.ModelForm):
    priorities = forms.MultipleChoiceField(
        choices=Priority.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        help_text="Leave all unticked for the kind's defaults.",
    )

    class Meta:
        model = Channel
        fields = ("name", "kind", "enabled", "priorities", "config", "secret")
        help_texts = {
            "config": 'JSON. log: {} · slack: {} · email: {"to": ["oncall@example.com"]} · '
            'sms / voice: {"account_sid": "AC…", "from_number": "+1…", "to_numbers": ["+1…"]} · '
            'pagerduty: {} · webhook: {"url": "https://…"}',
            "secret": " · ".join(
                f"{k}: {c.credential_hint}" for k, c in CHANNEL_KINDS.items() if c.credential_hint
            ),
        }


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = (
        "name",
        "kind",
        "enabled",
        "priorities_shown",
        "last_status",
        "last_delivery_at",
        "flag",
    )
    list_filter = ("kind", "enabled")
    actions = ["send_test", "clear_flag"]

    @admin.display(description="Priorities")
    def priorities_shown(self, channel):
        return ", ".join(channel.priorities or [])

    @admin.display(description="Flagged")
    def flag(self, channel):
        if channel.flagged_at:
            return format_html(
                '<span class="state-bad" title="{}">flagged</span>', channel.flagged_reason
            )
        return ""

    def has_run_permission(self, request):
        return request.user.has_perm(permissions.RUN_JOBS)

    @admin.action(description="Send a test notification", permissions=["run"])
    def send_test(self, request, queryset):
        for channel in queryset:
            notify.send_test(channel)
            self.log_change(request, channel, "Sent a test notification")
        self.message_user(
            request,
            f"Queued a test notification to {queryset.count()} channel(s); see Notifications.",
        )

    @admin.action(description="Clear the failure flag", permissions=["change"])
    def clear_flag(self, request, queryset):
        for channel in queryset.filter(flagged_at__isnull=False):
            channel.unflag()
            self.log_change(request, channel, "Cleared the failure flag")
        self.message_user(request, "Cleared.", messages.SUCCESS)


class EscalationLevelInline(admin.TabularInline):
    model = EscalationLevel
    extra = 0
    filter_horizontal = ("channels",)
    fields = ("position", "delay_minutes", "channels", "description")


@admin.register(EscalationPolicy)
class EscalationPolicyAdmin(admin.ModelAdmin):
    list_display = ("name", "is_default", "levels_shown")
    inlines = [EscalationLevelInline]

    @admin.display(description="Levels")
    def levels_shown(self, policy):
        return " → ".join(f"{lv.delay_minutes} min" for lv in policy.levels.all())


@admin.register(Silence)
class SilenceAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "component",
        "rule",
        "priority",
        "starts_at",
        "ends_at",
        "reason",
        "active",
        "created_by",
    )
    readonly_fields = ("created_by",)
    fields = (
        "component",
        "rule",
        "priority",
        "labels",
        "starts_at",
        "ends_at",
        "reason",
        "freeze_deploys",
        "created_by",
    )

    @admin.display(boolean=True, description="Active now")
    def active(self, silence):
        now = timezone.now()
        return silence.starts_at <= now < silence.ends_at

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(PriorityPolicy)
class PriorityPolicyAdmin(admin.ModelAdmin):
    list_display = ("priority", "cooldown_minutes")


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = (
        "created_at",
        "channel",
        "event",
        "incident",
        "status",
        "attempts",
        "http_status",
        "error",
    )
    list_filter = ("status", "event", "channel")
    readonly_fields = [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("channel", "incident")


@admin.register(InboxMessage)
class InboxAdmin(admin.ModelAdmin):
    """The in-console inbox: what inbox channels delivered, newest first, as a pager shows it."""

    list_display = ("updated_at", "priority_badge", "message", "channel", "incident_link")
    list_filter = ("channel", "event", "priority")
    search_fields = ("headline", "text")
    list_display_links = None
    list_per_page = 50

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="Priority")
    def priority_badge(self, item):
        return format_html(
            '<span class="{}">{}</span>',
            Incident.PRIORITY_CSS.get(item.priority, ""),
            item.priority,
        )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("channel", "incident")

    def get_changelist_instance(self, request):
        # The Acknowledge button only for someone who may, and only while it still means
        # something (the incident is triggered): decided once per page, not per row.
        changelist = super().get_changelist_instance(request)
        may = request.user.has_perm(permissions.ACKNOWLEDGE_INCIDENT)
        for item in changelist.result_list:
            item.can_ack = bool(
                may
                and item.ack_url
                and item.incident is not None
                and item.incident.status == Incident.Status.TRIGGERED
            )
        return changelist

    @admin.display(description="Message")
    def message(self, item):
        ack = ""
        if getattr(item, "can_ack", False):
            ack = format_html(
                ' <a class="button inbox-ack" href="{}">Acknowledge…</a>', item.ack_url
            )
        earlier = ""
        if item.history:
            earlier = format_html(
                '<details class="inbox-history"><summary>{} earlier update{}</summary>{}</details>',
                len(item.history),
                "s" if len(item.history) != 1 else "",
                format_html_join(
                    "", '<pre class="inbox-text">{}</pre>', ((h["text"],) for h in item.history)
                ),
            )
        return format_html('<pre class="inbox-text">{}</pre>{}{}', item.text, ack, earlier)

    @admin.display(description="Incident")
    def incident_link(self, item):
        if item.incident_id is None:
            return "—"
        url = reverse("admin:alerts_incident_change", args=[item.incident_id])
        return format_html('<a href="{}">#{}</a>', url, item.incident_id)
