"""The console's own models in the admin."""

from __future__ import annotations

from django.contrib import admin

from opsconsole.models import ApiToken, WorkerHeartbeat


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
