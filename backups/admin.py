"""Backups in the admin: presents and asks; the models and the queued tasks do the work."""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from backups import retention
from backups.models import (
    Backup,
    BackupKey,
    BackupPolicy,
    DatabaseTarget,
    RestorePoint,
    RestoreRequest,
    StorageLocation,
    WalArchive,
)
from opsconsole import permissions
from opsconsole.approvals.admin import ApprovalAdminMixin
from opsconsole.fields import reveal
from opsconsole.tasks import enqueue

RUN = permissions.RUN_JOBS


def _queue(backup: Backup) -> None:
    transaction.on_commit(lambda: enqueue("backups.tasks.run_backup", backup.pk))


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


class RunJobsMixin:
    def has_run_permission(self, request):
        return request.user.has_perm(RUN)


@admin.register(DatabaseTarget)
class DatabaseTargetAdmin(RunJobsMixin, admin.ModelAdmin):
    list_display = ("name", "engine", "production", "newest_backup")
    fields = (
        "name",
        "engine",
        "dsn",
        "production",
        "exclude_table_data",
        "required_tables",
        "check_queries",
    )
    actions = ["back_up_now", "switch_on_wal", "switch_off_wal"]

    def has_configure_permission(self, request):
        return request.user.has_perm("backups.change_databasetarget")

    @admin.action(
        description="Switch to continuous WAL (point-in-time recovery)",
        permissions=["configure"],
    )
    def switch_on_wal(self, request, queryset):
        for target in queryset:
            try:
                archive, first = WalArchive.switch_on(target, request.user)
            except (ValidationError, PermissionDenied) as exc:
                self.message_user(request, getattr(exc, "messages", [str(exc)])[0], messages.ERROR)
                continue
            self.log_change(request, target, "Continuous WAL switched on")
            self.message_user(
                request,
                f"{target}: continuous WAL on (slot {archive.slot_name}); base backup "
                f"{first.id} queued, then weekly; the hourly dump is off.",
            )

    @admin.action(description="Switch continuous WAL off", permissions=["configure"])
    def switch_off_wal(self, request, queryset):
        for target in queryset:
            archive = WalArchive.objects.filter(target=target, enabled=True).first()
            if archive is None:
                self.message_user(request, f"{target}: continuous WAL is not on.", messages.ERROR)
                continue
            archive.switch_off(request.user)
            self.log_change(request, target, "Continuous WAL switched off")
            self.message_user(request, f"{target}: continuous WAL off; hourly dumps again.")

    @admin.display(description="Newest good backup")
    def newest_backup(self, target):
        newest = target.newest_good_backup()
        if newest is None:
            return format_html('<span class="state-bad">{}</span>', "none")
        age = timezone.now() - newest.created_at
        return f"{newest.id} ({int(age.total_seconds() // 3600)} h ago)"

    @admin.action(description="Back up now", permissions=["run"])
    def back_up_now(self, request, queryset):
        for target in queryset:
            backup = Backup.objects.create(
                target=target, storage=StorageLocation.default(), requested_by=request.user
            )
            _queue(backup)
            self.log_change(request, target, f"Queued {backup.id}")
        self.message_user(
            request, f"Queued {queryset.count()} backup(s); watch them under Backups."
        )


@admin.register(StorageLocation)
class StorageLocationAdmin(admin.ModelAdmin):
    list_display = ("name", "kind")
    fields = ("name", "kind", "config", "secret")


@admin.register(BackupPolicy)
class BackupPolicyAdmin(RunJobsMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "target",
        "storage",
        "kind",
        "schedule",
        "retention_days",
        "verify_after",
        "enabled",
    )
    list_filter = ("kind", "enabled", "target")
    actions = ["back_up_now"]

    @admin.action(description="Back up now", permissions=["run"])
    def back_up_now(self, request, queryset):
        for policy in queryset:
            backup = policy.start(trigger=Backup.Trigger.MANUAL, user=request.user)
            _queue(backup)
            self.log_change(request, policy, f"Queued {backup.id}")
        self.message_user(
            request, f"Queued {queryset.count()} backup(s); watch them under Backups."
        )


@admin.register(Backup)
class BackupAdmin(RunJobsMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "target",
        "kind",
        "trigger",
        "status_badge",
        "size",
        "duration",
        "created_at",
    )
    list_filter = ("status", "kind", "trigger", "target", "storage")
    search_fields = ("id", "sha256")
    date_hierarchy = "created_at"
    actions = ["verify", "request_restore"]
    # The page shows the backup in its own sections (facts, timeline, related); what the
    # tool printed on failure stays as a field.
    fields = readonly_fields = ["stderr_tail", "storage_key"]
    change_list_template = "admin/backups/backup/change_list.html"
    change_form_template = "admin/backups/backup/change_form.html"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {
            **(extra_context or {}),
            "can_request_restore": self.has_request_restore_permission(request),
            "can_run": self.has_run_permission(request),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self):
        view = self.admin_site.admin_view(self.retention_view)
        return [path("retention/", view, name="backups_backup_retention"), *super().get_urls()]

    def retention_view(self, request):
        """What the next prune would delete, and why the rest stays."""

        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Retention preview",
            "opts": Backup._meta,
            "doomed": retention.due_for_deletion(),
            "protected": Backup.objects.filter(pk__in=retention.protected_ids()).select_related(
                "target"
            ),
        }
        return TemplateResponse(request, "admin/backups/backup/retention.html", context)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_request_restore_permission(self, request):
        return request.user.has_perm(RestoreRequest.REQUEST_PERMISSION)

    @admin.display(description="Status")
    def status_badge(self, backup):
        css = Backup.STATUS_CSS.get(backup.status, "state-ok")
        label = backup.get_status_display()
        if backup.status == Backup.Status.RUNNING:
            label += f" ({human_bytes(backup.bytes_read)} so far)"
        return format_html('<span class="{}" title="{}">{}</span>', css, backup.error[:300], label)

    @admin.display(description="Stored")
    def size(self, backup):
        return human_bytes(backup.bytes_stored) if backup.bytes_stored else "—"

    @admin.display(description="Duration")
    def duration(self, backup):
        return f"{backup.duration_seconds:.1f} s" if backup.duration_seconds is not None else "—"

    @admin.action(description="Verify (read it back whole)", permissions=["run"])
    def verify(self, request, queryset):
        for backup in queryset.filter(status__in=Backup.GOOD):
            transaction.on_commit(lambda pk=backup.pk: enqueue("backups.tasks.verify_one", pk))
        self.message_user(request, "Verification queued.")

    @admin.action(
        description="Request a restore into a new database", permissions=["request_restore"]
    )
    def request_restore(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one backup to restore.", messages.ERROR)
            return None
        restore = RestoreRequest(backup=queryset.get(), requested_by=request.user)
        try:
            restore.full_clean()
        except Exception as exc:
            self.message_user(
                request, "; ".join(getattr(exc, "messages", [str(exc)])), messages.ERROR
            )
            return None
        restore.save()
        self.log_addition(request, restore, "Requested")
        self.message_user(
            request, f"Restore requested into {restore.new_database}; an approver must approve it."
        )
        return HttpResponseRedirect(
            reverse("admin:backups_restorerequest_change", args=[restore.pk])
        )


@admin.register(RestoreRequest)
class RestoreRequestAdmin(ApprovalAdminMixin, admin.ModelAdmin):
    list_display = (
        "__str__",
        "status",
        "new_database",
        "requested_by",
        "decided_by",
        "requested_at",
    )
    list_filter = ("status", "mode")
    readonly_fields = (
        "status",
        "requested_by",
        "decided_by",
        "decided_at",
        "safety_backup",
        "old_database",
        "old_database_dropped_at",
        "recovered_server",
        "error",
    )
    fields = (
        "backup", "mode", "new_database", "recover_to", "recover_to_point", "reason",
        *readonly_fields,
    )  # fmt: skip
    raw_id_fields = ("backup",)
    actions = ["drop_old_database", "stop_kept_server"]

    @admin.display(description="Recovered server")
    def recovered_server(self, restore):
        """A kept server's connection string, to the approver who let it run only."""
        if restore.mode != RestoreRequest.Mode.KEEP or not restore.scratch_host:
            return "-"
        if restore.scratch_stopped_at:
            return f"stopped {restore.scratch_stopped_at:%Y-%m-%d %H:%M:%S} UTC"
        if restore.scratch_until and restore.scratch_until <= timezone.now():
            return f"stopping: the clean-up on {restore.scratch_host} stops it within 10 minutes"
        where = (
            f"runs on {restore.scratch_host} (loopback only) until "
            f"{restore.scratch_until:%Y-%m-%d %H:%M:%S} UTC"
        )
        if getattr(restore, "viewer_id", None) != restore.decided_by_id:
            return f"{where}; its connection string is shown to {restore.decided_by} only"
        return format_html(
            "{}; read-only login:<br><code>{}</code>", where, reveal(restore.scratch_dsn)
        )

    def get_object(self, request, object_id, from_field=None):
        restore = super().get_object(request, object_id, from_field)
        if restore is not None:
            restore.viewer_id = request.user.pk  # recovered_server shows the DSN by who looks
        return restore

    @admin.action(description="Stop the kept recovered server", permissions=["approve"])
    def stop_kept_server(self, request, queryset):
        for restore in queryset:
            try:
                here = restore.stop_kept_server(request.user)
            except ValidationError as exc:
                self.message_user(request, f"{restore}: {exc.messages[0]}", messages.WARNING)
                continue
            self.log_change(request, restore, "Stopped the recovered server")
            self.message_user(
                request,
                f"{restore}: recovered server stopped."
                if here
                else f"{restore}: the clean-up on {restore.scratch_host} stops it within "
                "10 minutes.",
            )

    def has_approve_permission(self, request):
        return request.user.has_perm(RestoreRequest.APPROVE_PERMISSION)

    @admin.action(description="Drop the database kept after a replace", permissions=["approve"])
    def drop_old_database(self, request, queryset):
        for restore in queryset:
            try:
                restore.drop_old_database(request.user)
            except ValidationError as exc:
                self.message_user(request, f"{restore}: {exc.messages[0]}", messages.WARNING)
                continue
            self.log_change(request, restore, f"Dropped {restore.old_database}")
            self.message_user(request, f"Dropped {restore.old_database}.")

    def get_readonly_fields(self, request, obj=None):
        if obj is not None:
            return (
                "backup", "mode", "new_database", "recover_to", "recover_to_point", "reason",
                *self.readonly_fields,
            )  # fmt: skip
        return self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            RestoreRequest.check_can_request(request.user)
            obj.requested_by = request.user
        super().save_model(request, obj, form, change)

    def has_add_permission(self, request):
        return request.user.has_perm(RestoreRequest.REQUEST_PERMISSION)


@admin.register(BackupKey)
class BackupKeyAdmin(admin.ModelAdmin):
    """The public half only: the identity leaves the console through export_backup_identity."""

    list_display = ("recipient", "active", "created_at", "exported_at")
    fields = ("recipient", "active", "created_at", "exported_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(WalArchive)
class WalArchiveAdmin(RunJobsMixin, admin.ModelAdmin):
    list_display = ("target", "enabled", "status", "recovery_point", "last_segment", "retained")
    fields = (
        "target", "storage", "enabled", "partial_every_seconds", "max_retained_mb",
        "status", "error", "recovery_point", "covered_until", "last_segment", "retained",
        "slot_name", "holder", "lease_expires_at", "segments_stored",
    )  # fmt: skip
    # Switched on and off from the target (slot, policies and all), not by a tick here.
    readonly_fields = (
        "target", "storage", "enabled", "status", "error", "recovery_point", "covered_until",
        "last_segment", "retained", "slot_name", "holder", "lease_expires_at", "segments_stored",
    )  # fmt: skip

    actions = ["create_restore_point"]

    def has_add_permission(self, request):
        return False  # switched on from the target (its checks and policies come with it)

    @admin.action(description="Create a restore point now (named by the time)", permissions=["run"])
    def create_restore_point(self, request, queryset):
        name = f"opsconsole-{timezone.now():%Y%m%d-%H%M%S}"
        for archive in queryset:
            try:
                point = RestorePoint.create(archive, name, request.user)
            except (ValidationError, PermissionDenied) as exc:
                self.message_user(request, getattr(exc, "messages", [str(exc)])[0], messages.ERROR)
                continue
            except Exception as exc:
                self.message_user(request, f"{archive}: {type(exc).__name__}", messages.ERROR)
                continue
            self.log_change(request, archive, f"Restore point {point.name} at {point.lsn}")
            self.message_user(request, f"Restore point {point.name} created at {point.lsn}.")

    @admin.display(description="Live RPO")
    def recovery_point(self, archive):
        age = archive.recovery_point_age()
        if age is None:
            return "nothing shipped yet"
        css = "state-ok" if age <= 60 else "state-bad"
        return format_html('<span class="{}">{} s</span>', css, f"{age:.0f}")

    @admin.display(description="WAL kept by the slot on the server")
    def retained(self, archive):
        return "-" if archive.retained_bytes is None else human_bytes(archive.retained_bytes)

    @admin.display(description="Stored")
    def segments_stored(self, archive):
        segments = archive.segments.filter(partial=False)
        total = sum(segments.values_list("bytes_stored", flat=True))
        return f"{segments.count()} segment(s), {human_bytes(total)}"


@admin.register(RestorePoint)
class RestorePointAdmin(admin.ModelAdmin):
    list_display = ("name", "archive", "lsn", "created_at", "created_by")
    readonly_fields = ("archive", "name", "lsn", "created_at", "created_by")

    def has_add_permission(self, request):
        return False  # created on the WAL archive, so the server records it too

    def has_change_permission(self, request, obj=None):
        return False
