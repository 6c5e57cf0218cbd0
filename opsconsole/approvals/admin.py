"""Admin support for ApprovalRequest models: approve/reject pages with a typed confirmation.

The admin only asks and presents; every rule (role, two-person, state,
confirmation text) is enforced by the model's `approve()`/`reject()`.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse


class DecisionForm(forms.Form):
    confirmation = forms.CharField(
        required=False,
        label="Type to confirm",
        widget=forms.TextInput(attrs={"autocomplete": "off", "autofocus": True}),
    )
    note = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))


class ApprovalAdminMixin:
    """Mix into a ModelAdmin of an ApprovalRequest subclass."""

    change_form_template = "admin/opsconsole/approval_change_form.html"
    decision_template = "admin/opsconsole/approval_decide.html"

    def get_urls(self):
        prefix = f"{self.model._meta.app_label}_{self.model._meta.model_name}"
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/approve/", view(self.approve_view), name=f"{prefix}_approve"),
            path("<path:object_id>/reject/", view(self.reject_view), name=f"{prefix}_reject"),
            *super().get_urls(),
        ]

    def has_change_permission(self, request, obj=None):
        # A filed request is a record: it is decided, never edited. Without this the
        # page of a finished request offered "Save" buttons that could change nothing.
        if obj is not None:
            return False
        return super().has_change_permission(request, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        if obj is not None:
            extra_context = {
                **(extra_context or {}),
                "can_decide": obj.can_approve(request.user),
                "approval_refusal": obj.approval_refusal(request.user),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def approve_view(self, request, object_id):
        return self._decision_view(request, object_id, approve=True)

    def reject_view(self, request, object_id):
        return self._decision_view(request, object_id, approve=False)

    def _decision_view(self, request, object_id, *, approve: bool):
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404("No such request")
        if not self.has_view_permission(request, obj):
            raise PermissionDenied
        refusal = obj.approval_refusal(request.user)
        if refusal and not request.user.has_perm(obj.APPROVE_PERMISSION):
            raise PermissionDenied(refusal)
        change_url = reverse(
            f"{self.admin_site.name}:{obj._meta.app_label}_{obj._meta.model_name}_change",
            args=[obj.pk],
        )
        form = DecisionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                if approve:
                    obj.approve(
                        request.user,
                        confirmation=form.cleaned_data["confirmation"],
                        note=form.cleaned_data["note"],
                    )
                else:
                    obj.reject(request.user, note=form.cleaned_data["note"])
            except ValidationError as exc:
                form.add_error("confirmation" if approve else None, exc)
            else:
                verb = "Approved" if approve else "Rejected"
                self.log_change(request, obj, f"{verb}. {form.cleaned_data['note']}".strip())
                self.message_user(request, f"{verb}: {obj}", messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"{'Approve' if approve else 'Reject'} {obj._meta.verbose_name}",
            "object": obj,
            "opts": obj._meta,
            "form": form,
            "approve": approve,
            "refusal": refusal,
            "phrase": obj.confirmation_phrase(),
            "change_url": change_url,
        }
        return TemplateResponse(request, self.decision_template, context)
