"""The admin site: branded, with the dashboard as its index.

Kept apart from admin.py: the default site is built while admin modules are
being discovered, and a module that both defines the site and registers on it
would register on a half-made one.
"""

from __future__ import annotations

from django.contrib import admin
from django.template.response import TemplateResponse
from django.urls import path

from opsconsole import dashboard


class OpsAdminSite(admin.AdminSite):
    site_header = "opsconsole"
    site_title = "opsconsole"
    index_title = "Dashboard"
    index_template = "admin/opsconsole_index.html"

    def index(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "panels": dashboard.panels_for(request)}
        return super().index(request, extra_context)

    def get_urls(self):
        return [
            path(
                "dashboard/panels/",
                self.admin_view(self.panels_view),
                name="dashboard_panels",
            ),
            *super().get_urls(),
        ]

    def panels_view(self, request):
        """The panels alone, for the dashboard to refresh itself in place."""
        # admin_view already marks it never_cache.
        return TemplateResponse(
            request, "admin/opsconsole_panels.html", {"panels": dashboard.panels_for(request)}
        )
