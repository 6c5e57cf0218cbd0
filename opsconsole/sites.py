"""The admin site: branded, with the dashboard as its index.

Kept apart from admin.py: the default site is built while admin modules are
being discovered, and a module that both defines the site and registers on it
would register on a half-made one.
"""

from __future__ import annotations

import functools

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models.base import ModelBase
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.text import capfirst

from opsconsole import dashboard
from opsconsole.fields import EncryptedTextField, secret_status

# The task queue's own records: readable by every role, changed (resubmitted, deleted,
# re-scheduled) only by a superuser. Work is started through the console's records.
SUPERUSER_ONLY_APPS = {"django_q"}


class OpsAdminSite(admin.AdminSite):
    site_header = "opsconsole"
    site_title = "opsconsole"
    index_title = "Dashboard"
    index_template = "admin/opsconsole_index.html"

    def register(self, model_or_iterable, admin_class=None, **options):
        """Register as usual; then, on pages where an encrypted field is read-only, it shows
        its status ("set, changed … by …") instead of the field (whose value is a Secret
        and would print only "set")."""
        super().register(model_or_iterable, admin_class, **options)
        models = (
            [model_or_iterable] if isinstance(model_or_iterable, ModelBase) else model_or_iterable
        )
        for model in models:
            model_admin = self._registry[model]
            secrets = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
            if secrets:
                _show_secret_status(model_admin, secrets)
            if model._meta.app_label in SUPERUSER_ONLY_APPS:
                _superusers_only(model_admin)
            _refuse_actions_not_allowed(model_admin)

    def index(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "panels": dashboard.panels_for(request)}
        return super().index(request, extra_context)

    def get_urls(self):
        return [
            path(
                "dashboard/panels/",
                self.admin_view(self.panels_view),
                name="dashboard_panels",
            ),
            *super().get_urls(),
        ]

    def panels_view(self, request):
        """The panels alone, for the dashboard to refresh itself in place."""
        # admin_view already marks it never_cache.
        return TemplateResponse(
            request, "admin/opsconsole_panels.html", {"panels": dashboard.panels_for(request)}
        )


def _show_secret_status(model_admin, secrets: list[EncryptedTextField]) -> None:
    """Where the person may not change the record, each encrypted field becomes a read-only
    line with its status."""
    names = {f.name: f"{f.name}_status" for f in secrets}
    for field in secrets:
        display = functools.partial(secret_status, field=field)
        display.short_description = capfirst(field.verbose_name)
        setattr(model_admin, names[field.name], display)
    get_fieldsets = model_admin.get_fieldsets

    def fieldsets(request, obj=None):
        sets = get_fieldsets(request, obj)
        if obj is None or model_admin.has_change_permission(request, obj):
            return sets
        return [
            (title, {**opts, "fields": [_swap(f, names) for f in opts.get("fields", ())]})
            for title, opts in sets
        ]

    model_admin.get_fieldsets = fieldsets


def _swap(field, names: dict[str, str]):
    if isinstance(field, list | tuple):
        return type(field)(names.get(f, f) for f in field)
    return names.get(field, field)


def _superusers_only(model_admin) -> None:
    """Read-only for everyone but superusers: no add, change, delete or action."""

    def superuser(request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    model_admin.has_add_permission = lambda request, obj=None: superuser(request)
    model_admin.has_change_permission = superuser
    model_admin.has_delete_permission = superuser
    get_actions = model_admin.get_actions
    model_admin.get_actions = lambda request: get_actions(request) if superuser(request) else {}


def _refuse_actions_not_allowed(model_admin) -> None:
    """An action POSTed by someone who may not run it is a 403, not a quiet no-op."""
    changelist_view = model_admin.changelist_view

    def guarded(request, extra_context=None):
        name = request.POST.get("action") if request.method == "POST" else None
        if name and name not in model_admin.get_actions(request):
            raise PermissionDenied(f"You may not run {name!r} here.")
        return changelist_view(request, extra_context)

    model_admin.changelist_view = guarded
