"""Model fields whose values are encrypted at rest, and never shown to anyone.

An encrypted field's attribute is a `Secret`, not a string: printing it, a
template, a read-only admin page or a JSON encoder gets "set" / "not set" (or
an error), never the value. Code that uses the secret asks for it by name,
`.reveal()`, at the one place it is handed to a client library. In forms the
field is write-only (`SecretInput`).
"""

from __future__ import annotations

import hmac
from typing import Any

from django import forms
from django.apps import apps
from django.db import models

from opsconsole import crypto


class _Sentinel:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


# The operator ticked "remove the stored value".
CLEAR = _Sentinel("CLEAR")
# The operator left the box empty: keep what is stored. Not an "empty value" on
# purpose: the model form then still validates the field, so a record that must
# have a secret and has none yet gets "This field cannot be blank."
KEEP = _Sentinel("KEEP")


class Secret:
    """A decrypted secret that does not show itself.

    `str()`, `repr()` and templates say only whether it is set; `reveal()`
    returns the value for the client library that needs it. It compares equal
    to the same value (as a Secret or a string), in constant time.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str = ""):
        self._value = value or ""

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __str__(self) -> str:
        return "set" if self._value else "not set"

    def __repr__(self) -> str:
        return f"Secret({self})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other = other._value
        if not isinstance(other, str):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self):
        # Pickling would put the value in clear wherever the pickle goes (a task queue).
        raise TypeError("a Secret cannot be pickled; pass the record's id instead")


def reveal(value: Secret | str | None) -> str:
    """The value of a secret, whether it is already a Secret or still a plain string."""
    if isinstance(value, Secret):
        return value.reveal()
    return value or ""


class _SecretAttribute:
    """Keeps an encrypted field's attribute a Secret, whatever is assigned to it."""

    def __init__(self, field: EncryptedTextField):
        self.field = field

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        return instance.__dict__.get(self.field.attname, Secret())

    def __set__(self, instance, value) -> None:
        if value is not None and not isinstance(value, Secret):
            value = Secret(str(value))
        instance.__dict__[self.field.attname] = value


class SecretInput(forms.PasswordInput):
    """Never renders the stored value: it shows only whether one is set.

    Leaving the box empty keeps the stored value; the checkbox clears it.
    """

    template_name = "opsconsole/widgets/secret.html"

    def __init__(self, attrs: dict | None = None):
        super().__init__(
            attrs={"autocomplete": "new-password", **(attrs or {})}, render_value=False
        )

    def get_context(self, name: str, value: Any, attrs: dict | None) -> dict:
        is_set = bool(value) and value is not CLEAR
        context = super().get_context(name, None, attrs)
        context["widget"]["is_set"] = is_set
        context["widget"]["clear_name"] = f"{name}-clear"
        return context

    def value_from_datadict(self, data, files, name):
        if data.get(f"{name}-clear"):
            return CLEAR
        return super().value_from_datadict(data, files, name)

    def value_omitted_from_data(self, data, files, name):
        return name not in data and f"{name}-clear" not in data


class SecretFormField(forms.CharField):
    widget = SecretInput

    def __init__(self, *args, **kwargs):
        kwargs["required"] = False  # blank means "keep"; the model decides if a value must exist
        kwargs["strip"] = False
        super().__init__(*args, **kwargs)

    def to_python(self, value):
        if value is CLEAR:
            return CLEAR
        value = super().to_python(value)
        return KEEP if value in self.empty_values else value

    def run_validators(self, value):
        if value not in (CLEAR, KEEP):
            super().run_validators(value)

    def has_changed(self, initial, data) -> bool:
        return data is CLEAR or bool(data)


class EncryptedTextField(models.TextField):
    """Text encrypted with AES-256-GCM; the field's label is bound into the ciphertext.

    Values cannot be filtered on (each encryption is different). The model's
    attribute is a `Secret`; in forms the field is write-only (SecretInput).
    """

    description = "Text encrypted at rest"

    def contribute_to_class(self, cls, name, private_only=False):
        super().contribute_to_class(cls, name, private_only)
        setattr(cls, self.attname, _SecretAttribute(self))

    @property
    def context(self) -> str:
        return f"{self.model._meta.label_lower}.{self.name}"

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return crypto.decrypt(value, context=self.context)

    def get_prep_value(self, value):
        value = reveal(value) if isinstance(value, Secret) else super().get_prep_value(value)
        if not value:
            return value
        return crypto.encrypt(value, context=self.context)

    def value_to_string(self, obj) -> str:
        # Serialised (dumpdata), a secret stays what it is in the table: ciphertext.
        return self.get_prep_value(self.value_from_object(obj)) or ""

    def to_python(self, value):
        if isinstance(value, Secret) or value is None:
            return value
        if isinstance(value, str) and crypto.token_key_id(value) is not None:
            return crypto.decrypt(value, context=self.context)
        return value

    def save_form_data(self, instance, data) -> None:
        if data is CLEAR:
            setattr(instance, self.attname, "")
        elif data is not KEEP and data:
            setattr(instance, self.attname, data)

    def formfield(self, **kwargs):
        # Forced, not defaulted: the admin maps TextField to a textarea, which
        # would render the decrypted secret into the page.
        return super().formfield(**{**kwargs, "form_class": SecretFormField, "widget": SecretInput})


def encrypted_fields() -> list[EncryptedTextField]:
    """Every encrypted field of every installed model (concrete fields only)."""
    return [
        field
        for model in apps.get_models()
        if not model._meta.proxy
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField) and field.model is model
    ]


def secret_status(obj: models.Model, field: EncryptedTextField) -> str:
    """What a person may know of a stored secret: set or not, and when and by whom it was
    last set in the admin (from the admin's own history)."""
    import json

    from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType
    from django.utils.text import capfirst

    if not getattr(obj, field.attname):
        return "not set"
    label = str(capfirst(field.verbose_name))
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(obj),
        object_id=str(obj.pk),
        action_flag__in=[ADDITION, CHANGE],
    ).select_related("user")
    for entry in entries.order_by("-action_time")[:50]:
        try:
            changes = json.loads(entry.change_message or "[]")
        except ValueError:
            continue
        changed = any(label in (c.get("changed") or {}).get("fields", []) for c in changes)
        if changed or entry.action_flag == ADDITION:
            return f"set, changed {entry.action_time:%Y-%m-%d %H:%M} UTC by {entry.user}"
    return "set"
