from django.contrib import admin
from django.contrib.auth.decorators import login_not_required
from django.urls import include, path
from django.views.generic import RedirectView

from opsconsole import health, metrics, routes, status

urlpatterns = [
    path("health", health.live, name="health"),
    path("health/ready", health.ready, name="health-ready"),
    path("api/system/status", status.system_status, name="system-status"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    *(path(prefix, include(module)) for prefix, module in routes.includes()),
    path("", login_not_required(RedirectView.as_view(pattern_name="admin:index")), name="home"),
]
