"""SettingChange: a guarded setting's new value, waiting for a second person.

See `opsconsole.guarded` for which settings are guarded and how the admin files
these. The change is shown as a difference; once approved, a worker applies it
if nothing changed the setting meanwhile.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models, transaction
from django.utils.text import capfirst

from opsconsole import guarded, permissions
from opsconsole.approvals.models import ApprovalRequest, RunStatus
from opsconsole.fields import EncryptedTextField, reveal


class SettingChangeFailed(Exception):
    pass


class SettingChange(ApprovalRequest):
    """A change to guarded settings of one record, applied once someone else approves."""

    APPROVE_PERMISSION = permissions.APPROVE_SETTING_CHANGE
    SHOWN_WITH = ("content_type",)
    FAILURES = (SettingChangeFailed, ValidationError)

    Status = RunStatus

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.REQUESTED)
    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=200)
    changes = models.JSONField(help_text='{"field": {"label": …, "from": …, "to": …}}')
    # New values of guarded secrets, as JSON {field: value}: encrypted, shown to nobody.
    secret_values = EncryptedTextField(blank=True, default="")

    class Meta:
        ordering = ["-requested_at"]
        verbose_name = "guarded setting change"

    def __str__(self) -> str:
        names = ", ".join(c["label"] for c in self.changes.values())
        return f"{names} of {self.content_type.name} {self.object_repr}"

    def confirmation_phrase(self) -> str:
        return self.object_repr

    @classmethod
    def check_can_request(cls, user) -> None:
        # Anyone who may edit the record may ask; whoever may approve decides.
        if not user.is_active or not user.is_staff:
            raise PermissionDenied("Only staff may request a setting change.")

    @classmethod
    def file(
        cls,
        user,
        obj: models.Model,
        changes: dict[str, tuple[Any, Any]],
        secrets: dict[str, str] | None = None,
    ) -> SettingChange:
        """Ask for `changes` ({field: (from, to)}) to `obj`, as `user`; `secrets` holds the
        new values of guarded secrets (their `changes` entries hold hashes only)."""
        cls.check_can_request(user)
        return cls.objects.create(
            secret_values=json.dumps(secrets) if secrets else "",
            requested_by=user,
            content_type=ContentType.objects.get_for_model(obj),
            object_id=str(obj.pk),
            object_repr=str(obj)[:200],
            changes={
                name: {
                    "label": str(capfirst(obj._meta.get_field(name).verbose_name)),
                    "from": old,
                    "to": new,
                    "secret": name in (secrets or {}),
                }
                for name, (old, new) in changes.items()
            },
        )

    def target(self) -> models.Model:
        return self.content_type.get_object_for_this_type(pk=self.object_id)

    def run(self) -> None:
        try:
            obj = self.target()
        except self.content_type.model_class().DoesNotExist:
            raise SettingChangeFailed(f"{self.object_repr} no longer exists") from None
        moved = [
            c["label"]
            for name, c in self.changes.items()
            if guarded.value_of(obj, name) != c["from"]
        ]
        if moved:
            raise SettingChangeFailed(
                f"{', '.join(moved)} changed since this was requested; request it again"
            )
        with transaction.atomic():
            plain = {}
            for name, change in self.changes.items():
                field = obj._meta.get_field(name)
                if guarded.is_secret(type(obj), name):
                    plain[name] = True
                    setattr(obj, name, json.loads(reveal(self.secret_values))[name])
                elif field.many_to_many:
                    related = field.related_model._default_manager
                    getattr(obj, name).set(
                        [o for o in related.all() if str(o) in set(change["to"])]
                    )
                else:
                    plain[name] = change["to"]
                    setattr(obj, name, change["to"])
            if plain:
                obj.full_clean()
                obj.save(update_fields=list(plain))
