"""The public status page (when turned on): service names and states, public incident titles."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from alerts.models import Incident
from dr.models import ServiceCheck


@require_GET
@login_not_required
def status_page(request):
    """The public status page, when turned on: service names and states, and the public
    titles of open incidents about them (nothing of the configuration, no error text)."""
    if not settings.DR_STATUS_PAGE_ENABLED:
        raise Http404("The status page is turned off.")

    checks = list(ServiceCheck.objects.filter(enabled=True, public=True).only("name", "state"))
    # Only incidents about the services listed, and none silenced for maintenance:
    # a backup or deploy incident is for the team, not the public.
    incidents = list(
        Incident.objects.exclude(status=Incident.Status.RESOLVED)
        .filter(silence__isnull=True, component__in=[c.name for c in checks])
        .exclude(public_title="")
        .only("public_title", "opened_at")
        .order_by("-opened_at")[:20]
    )
    all_well = not incidents and all(c.state == ServiceCheck.State.HEALTHY for c in checks)
    response = render(
        request,
        "dr/status_page.html",
        {
            "title": settings.DR_STATUS_PAGE_TITLE,
            "checks": checks,
            "incidents": incidents,
            "all_well": all_well,
            "now": timezone.now(),
        },
    )
    response["Cache-Control"] = "public, max-age=30"
    return response
