"""The admin site: branded, with the dashboard as its index.

Kept apart from admin.py: the default site is built while admin modules are
being discovered, and a module that both defines the site and registers on it
would register on a half-made one.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models.base import ModelBase
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html
from django.utils.text import capfirst

from opsconsole import dashboard, guarded, login, needs
from opsconsole.fields import EncryptedTextField, reveal, secret_status

# The task queue's own records: readable by every role, changed (resubmitted, deleted,
# re-scheduled) only by a superuser. Work is started through the console's records.
SUPERUSER_ONLY_APPS = {"django_q"}


class OpsAdminSite(admin.AdminSite):
    site_header = "opsconsole"
    site_title = "opsconsole"
    index_title = "Dashboard"
    index_template = "admin/opsconsole_index.html"
    # The console has no other site to view; the public status page is linked instead.
    site_url = None

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
            _guard_settings(model_admin)
            _follow_running_work(model_admin)
            if hasattr(model_admin, "user_change_password"):
                _own_password_only(model_admin)

    def each_context(self, request):
        return {
            **super().each_context(request),
            "status_page_enabled": settings.DR_STATUS_PAGE_ENABLED,
        }

    def get_app_list(self, request, app_label=None):
        """The sidebar and index lists, with how many of each waits for this person."""
        app_list = super().get_app_list(request, app_label)
        if not request.user.is_authenticated:
            return app_list
        waiting = needs.counts(request)
        for app in app_list:
            for model in app["models"]:
                count = waiting.get(model["model"]._meta.label_lower)
                if count:
                    model["name"] = format_html(
                        '{} <span class="needs-count" title="{} waiting for you">{}</span>',
                        model["name"], count, count,
                    )  # fmt: skip
        return app_list

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
            path(
                "second-factor/",
                self.admin_view(lambda request: login.second_factor_view(request, self)),
                name="second_factor",
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


# How often a page showing running work fetches itself again; a record may say otherwise.
FOLLOW_SECONDS = 3


def _follow_seconds(records) -> int | None:
    running = [r for r in records if getattr(r, "in_progress", False)]
    return min((getattr(r, "follow_every", FOLLOW_SECONDS) for r in running), default=None)


def _follow_running_work(model_admin) -> None:
    """A record's page, or a list with such a record on it, follows the running work in
    place until it ends (`follow_seconds` in the page; follow.js does the rest). The record
    says whether it is still running (`in_progress`)."""
    render_change_form = model_admin.render_change_form
    changelist_view = model_admin.changelist_view

    def render(request, context, add=False, change=False, form_url="", obj=None):
        if obj is not None and obj.pk is not None:
            context["follow_seconds"] = _follow_seconds([obj])
            # "Incident", not "Change incident" (most of these records are only read).
            context["title"] = capfirst(model_admin.model._meta.verbose_name)
        return render_change_form(request, context, add, change, form_url, obj)

    def changelist(request, extra_context=None):
        # A list is titled by what it lists ("Deployments"), not "Select deployment to view".
        title = capfirst(model_admin.model._meta.verbose_name_plural)
        response = changelist_view(request, {"title": title, **(extra_context or {})})
        cl = (getattr(response, "context_data", None) or {}).get("cl")
        if cl is not None:
            response.context_data["follow_seconds"] = _follow_seconds(cl.result_list)
        return response

    model_admin.render_change_form = render
    model_admin.changelist_view = changelist


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


def _guard_settings(model_admin) -> None:
    """Guarded settings edited in the admin are filed for approval instead of saved (see
    `opsconsole.guarded`; which fields is read when saving, once every app is ready)."""
    save_model, save_related = model_admin.save_model, model_admin.save_related

    def plain_fields(model) -> list[str]:
        return [n for n in guarded.fields_of(model) if not model._meta.get_field(n).many_to_many]

    def guarded_save_model(request, obj, form, change):
        names = plain_fields(type(obj))
        if not names or request.user.is_superuser:
            return save_model(request, obj, form, change)
        if change:
            before = type(obj)._default_manager.get(pk=obj.pk)
            wanted = {n: (guarded.value_of(before, n), guarded.value_of(obj, n)) for n in names}
        else:
            safe = guarded.safe_on_create(type(obj))
            wanted = {n: (safe[n], guarded.value_of(obj, n)) for n in names if n in safe}
        wanted = {n: pair for n, pair in wanted.items() if pair[0] != pair[1]}
        secrets = {n: reveal(getattr(obj, n)) for n in wanted if guarded.is_secret(type(obj), n)}
        for name, (in_force, _) in wanted.items():
            if name in secrets:
                setattr(obj, name, getattr(before, name) if change else "")
            else:
                setattr(obj, name, in_force)
        save_model(request, obj, form, change)
        if wanted:
            _file(request, model_admin, obj, wanted, secrets)

    def guarded_save_related(request, form, formsets, change):
        obj = form.instance
        names = [n for n in guarded.fields_of(type(obj)) if obj._meta.get_field(n).many_to_many]
        if not names or request.user.is_superuser:
            return save_related(request, form, formsets, change)
        before = {n: guarded.value_of(obj, n) for n in names}
        save_related(request, form, formsets, change)
        wanted = {n: (before[n], guarded.value_of(obj, n)) for n in names}
        wanted = {n: pair for n, pair in wanted.items() if pair[0] != pair[1]}
        for name, (in_force, _) in wanted.items():
            field = obj._meta.get_field(name)
            related = field.related_model._default_manager
            getattr(obj, name).set([o for o in related.all() if str(o) in set(in_force)])
        if wanted:
            _file(request, model_admin, obj, wanted)

    model_admin.save_model = guarded_save_model
    model_admin.save_related = guarded_save_related


def _file(request, model_admin, obj, wanted, secrets=None) -> None:
    from django.contrib import messages
    from django.urls import reverse
    from django.utils.html import format_html

    from opsconsole.models import SettingChange

    change = SettingChange.file(request.user, obj, wanted, secrets)
    url = reverse(
        f"{model_admin.admin_site.name}:opsconsole_settingchange_change", args=[change.pk]
    )
    model_admin.message_user(
        request,
        format_html(
            'The change to {} waits for a second person\'s approval: <a href="{}">{}</a>. '
            "Until then the old value stays in force.",
            ", ".join(c["label"] for c in change.changes.values()),
            url,
            f"request #{change.pk}",
        ),
        messages.WARNING,
    )


def _own_password_only(model_admin) -> None:
    """Only a superuser sets another person's password: whoever knows it could sign in as
    them, second factor enrolment included."""
    change_password = model_admin.user_change_password

    def guarded(request, id, form_url=""):
        if not request.user.is_superuser and str(id) != str(request.user.pk):
            raise PermissionDenied("Only a superuser may set another person's password.")
        return change_password(request, id, form_url)

    model_admin.user_change_password = guarded
