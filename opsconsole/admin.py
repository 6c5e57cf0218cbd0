"""The console's own models in the admin."""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from opsconsole.approvals.admin import ApprovalAdminMixin
from opsconsole.models import ApiToken, SettingChange, WorkerHeartbeat


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(admin.ModelAdmin):
    list_display = ("worker", "seen_at")
    ordering = ("-seen_at",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made with `manage.py create_api_token` (the secret is shown once there)."""

    list_display = (
        "name", "prefix", "scopes", "created_by", "expires_at", "last_used_at", "revoked_at",
    )  # fmt: skip
    readonly_fields = (
        "name", "prefix", "scopes", "created_by", "created_at", "expires_at", "last_used_at",
        "revoked_at",
    )  # fmt: skip
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke(self, request, queryset):
        for token in queryset:
            token.revoke()
            self.log_change(request, token, "Revoked")
        self.message_user(request, f"Revoked {queryset.count()} token(s).")


@admin.register(SettingChange)
class SettingChangeAdmin(ApprovalAdminMixin, admin.ModelAdmin):
    """Guarded setting changes: the difference, who asked, and approve / reject."""

    list_display = ("__str__", "status", "requested_by", "requested_at", "decided_by")
    list_filter = ("status",)
    fields = (
        "target_link", "difference", "status", "requested_by", "requested_at", "decided_by",
        "decided_at", "decision_note", "error",
    )  # fmt: skip
    readonly_fields = fields
    exclude = ("secret_values",)

    def has_add_permission(self, request):
        return False

    @admin.display(description="Record")
    def target_link(self, change):
        model = change.content_type.model_class()
        if model is None or model not in self.admin_site._registry:
            return change.object_repr
        url = reverse(
            f"admin:{model._meta.app_label}_{model._meta.model_name}_change",
            args=[change.object_id],
        )
        return format_html('<a href="{}">{}</a>', url, change.object_repr)

    @admin.display(description="Change")
    def difference(self, change):
        rows = format_html_join(
            "",
            "<tr><th>{}</th><td><del>{}</del></td><td><ins>{}</ins></td></tr>",
            (
                (
                    c["label"],
                    ("set" if c["from"] else "not set") if c.get("secret") else _shown(c["from"]),
                    "a new value (not shown)" if c.get("secret") else _shown(c["to"]),
                )
                for c in change.changes.values()
            ),
        )
        return format_html(
            '<table class="setting-diff"><thead><tr><th>Setting</th><th>In force</th>'
            "<th>Asked for</th></tr></thead><tbody>{}</tbody></table>",
            rows,
        )


def _shown(value) -> str:
    if isinstance(value, str) and value.startswith("hmac:"):
        return "a stored value (not shown)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return "(empty)" if value in ("", None) else str(value)


class PersonAdmin(UserAdmin):
    """People: everyone in the console sees who a colleague is and what role they hold
    (a "Requested by alice" link leads here); only a superuser manages accounts."""

    list_display = ("username", "full_name", "roles", "email", "last_login", "is_active")
    list_filter = ("groups", "is_active")

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("groups")

    def get_fieldsets(self, request, obj=None):
        if obj is None or self.has_change_permission(request, obj):
            return super().get_fieldsets(request, obj)
        # Nothing about how they sign in: no password hash, no permission list.
        return (
            (None, {"fields": ("username", "full_name", "roles", "email")}),
            ("Activity", {"fields": ("last_login", "date_joined", "is_active")}),
        )

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return (*fields, "full_name", "roles")

    @admin.display(description="Name")
    def full_name(self, user) -> str:
        return user.get_full_name() or "—"

    @admin.display(description="Role")
    def roles(self, user) -> str:
        names = [g.name for g in user.groups.all()]
        if user.is_superuser:
            names.insert(0, "Superuser")
        return ", ".join(names) or "No role"


admin.site.unregister(User)
admin.site.register(User, PersonAdmin)
