"""Dashboard panel: the last five deployments across environments.

Also this app's part of the system status API (`opsconsole.status`).
"""

from __future__ import annotations

from deployments.models import Deployment


def deployments_panel(request) -> dict:
    return {
        "deployments": [
            {"deployment": d, "css": Deployment.STATUS_CSS.get(d.status, "")}
            for d in Deployment.objects.select_related("environment").order_by("-received_at")[:5]
        ]
    }


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
