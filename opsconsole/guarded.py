"""Settings that change only with a second person's approval.

Apps name, from `AppConfig.ready()`, the fields of their models that decide
who holds production: the two-person rule, a production flag, whether an
action runs by itself, commands and URLs the console will call, the rollback
policy. A person who edits one in the admin does not change it: the rest of
the form is saved, and a `SettingChange` (an approval request) is filed with
the difference, applied by a worker once someone else approves it. A new
record starts with the safe value of each flag named in `on_create` (two
people required, production, not automatic), and asks for the rest.

Superusers are the break-glass accounts that hold everything anyway: their
edits apply at once, and are logged as every admin edit is.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models

_guarded: dict[str, tuple[str, ...]] = {}
_safe_on_create: dict[str, dict[str, Any]] = {}


def register(model_label: str, *fields: str, on_create: dict[str, Any] | None = None) -> None:
    """Guard `fields` of the model "app_label.ModelName"; a new record starts with the
    values in `on_create`. A guarded secret (a webhook URL, a connection string: where
    the console sends or connects) is compared by a keyed hash and its new value waits
    encrypted in the request, shown to nobody."""
    model = apps.get_model(model_label)
    for name in fields:
        model._meta.get_field(name)  # a typo fails at start-up
    _guarded[model._meta.label] = (*_guarded.get(model._meta.label, ()), *fields)
    _safe_on_create.setdefault(model._meta.label, {}).update(on_create or {})


def fields_of(model: type[models.Model]) -> tuple[str, ...]:
    return _guarded.get(model._meta.label, ())


def safe_on_create(model: type[models.Model]) -> dict[str, Any]:
    return _safe_on_create.get(model._meta.label, {})


def is_secret(model: type[models.Model], name: str) -> bool:
    from opsconsole.fields import EncryptedTextField

    return isinstance(model._meta.get_field(name), EncryptedTextField)


def value_of(obj: models.Model, name: str):
    """A field's value as the change request stores it (JSON: names for many-to-many; for a
    secret, a keyed hash that says whether it changed and nothing of it)."""
    field = obj._meta.get_field(name)
    if is_secret(type(obj), name):
        from opsconsole.fields import reveal

        value = reveal(getattr(obj, name))
        if not value:
            return ""
        digest = hmac.new(settings.SECRET_KEY.encode(), value.encode(), hashlib.sha256)
        return "hmac:" + digest.hexdigest()[:32]
    if field.many_to_many:
        if obj.pk is None:
            return []
        return sorted(str(o) for o in getattr(obj, name).all())
    return field.value_from_object(obj)
