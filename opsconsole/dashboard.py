"""Panels on the admin index. Apps register theirs from `AppConfig.ready()`:

    dashboard.register(Panel("backups", "Backups", "backups/panel.html", context_fn, order=30))

The index template loops over the panels the user may see; no app edits it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("opsconsole.dashboard")


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    template: str
    context: Callable[[Any], dict[str, Any]] = field(default=lambda request: {})
    order: int = 100
    permission: str | None = None  # e.g. "backups.view_backup"


_panels: dict[str, Panel] = {}


def register(panel: Panel) -> None:
    _panels[panel.key] = panel


def panels_for(request) -> list[dict[str, Any]]:
    """The panels `request.user` may see, each with its rendered context."""
    shown = []
    for panel in sorted(_panels.values(), key=lambda p: (p.order, p.key)):
        if panel.permission and not request.user.has_perm(panel.permission):
            continue
        try:
            context = panel.context(request)
            error = None
        except Exception:
            # One broken panel must not take the whole console down at 3 a.m.
            log.exception("dashboard panel %s failed", panel.key)
            context, error = {}, "This panel could not be loaded; the error is in the log."
        shown.append(
            {
                "key": panel.key,
                "title": panel.title,
                "template": panel.template,
                "context": context,
                "error": error,
            }
        )
    return shown
