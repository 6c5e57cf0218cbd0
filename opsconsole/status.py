"""GET /api/system/status: the console's view of the service, for people and scripts.

The core imports no app: each app registers the part it knows about from its
`AppConfig.ready()` (as dashboard panels are registered), and this view puts
the parts together. A part may say that it makes the whole "degraded".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from opsconsole.api import bearer_token


@dataclass(frozen=True)
class StatusPart:
    key: str
    collect: Callable[[datetime], Any]
    degrades: Callable[[Any], bool] | None = None


_parts: dict[str, StatusPart] = {}


def register(
    key: str,
    collect: Callable[[datetime], Any],
    *,
    degrades: Callable[[Any], bool] | None = None,
) -> None:
    """Add `key` to the status: `collect(now)` returns it, `degrades(value)` says whether
    it makes the whole status "degraded"."""
    _parts[key] = StatusPart(key, collect, degrades)


def collect(now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    values = {key: part.collect(now) for key, part in _parts.items()}
    degraded = any(part.degrades(values[key]) for key, part in _parts.items() if part.degrades)
    return {"status": "degraded" if degraded else "ok", "generated_at": now, **values}


@require_GET
@bearer_token("status:read", allow_staff_session=True)
def system_status(request):
    """Session (staff) or bearer token; every app's part of the picture."""
    return JsonResponse(collect())
