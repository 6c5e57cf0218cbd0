"""Dashboard panel: one row per environment (what is live, since when, health, pending).

Also this app's part of the system status API (`opsconsole.status`).
"""

from __future__ import annotations

from deployments.models import Deployment, Environment


def deployments_panel(request) -> dict:
    return {"environments": [env.live_state() for env in Environment.objects.order_by("name")]}


def deployments_status(now) -> list[dict]:
    """The system status API's "deployments": the last five."""
    return [
        {
            "environment": d.environment.name,
            "version": d.version,
            "status": d.status,
            "received_at": d.received_at,
        }
        for d in Deployment.objects.select_related("environment")[:5]
    ]
