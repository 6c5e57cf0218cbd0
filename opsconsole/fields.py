"""Model fields whose values are encrypted at rest, and their write-only admin widget."""

from __future__ import annotations

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

    Values cannot be filtered on (each encryption is different). In forms the
    field is write-only: see SecretInput.
    """

    description = "Text encrypted at rest"

    @property
    def context(self) -> str:
        return f"{self.model._meta.label_lower}.{self.name}"

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return crypto.decrypt(value, context=self.context)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return crypto.encrypt(value, context=self.context)

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
