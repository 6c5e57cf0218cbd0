"""Dashboard panel: the last five deployments across environments."""

from __future__ import annotations

from deployments.models import Deployment


def deployments_panel(request) -> dict:
    return {
        "deployments": [
            {"deployment": d, "css": Deployment.STATUS_CSS.get(d.status, "")}
            for d in Deployment.objects.select_related("environment").order_by("-received_at")[:5]
        ]
    }
