"""The admin site: branded, with the dashboard as its index.

Kept apart from admin.py: the default site is built while admin modules are
being discovered, and a module that both defines the site and registers on it
would register on a half-made one.
"""

from __future__ import annotations

from django.contrib import admin

from opsconsole import dashboard


class OpsAdminSite(admin.AdminSite):
    site_header = "opsconsole"
    site_title = "opsconsole"
    index_title = "Dashboard"
    index_template = "admin/opsconsole_index.html"

    def index(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "panels": dashboard.panels_for(request)}
        return super().index(request, extra_context)
