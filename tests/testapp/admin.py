from django.contrib import admin

from opsconsole.approvals.admin import ApprovalAdminMixin

from .models import ChangeRequest, Vault


@admin.register(Vault)
class VaultAdmin(admin.ModelAdmin):
    fields = ("name", "secret", "optional_secret")


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ApprovalAdminMixin, admin.ModelAdmin):
    list_display = ("environment", "status", "requested_by", "decided_by")
    readonly_fields = ("status", "requested_by", "decided_by", "decided_at")
