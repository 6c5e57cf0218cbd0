from django.contrib.auth.decorators import login_not_required
from django.urls import path

from opsconsole.urls import urlpatterns as console_urls


@login_not_required
def boom(request):
    password = "hunter2-in-a-local"  # noqa: F841 - the scrubber must hide frame locals
    raise RuntimeError("exploded while talking to postgres://app:s3cr3t@db.internal/app")


urlpatterns = [path("boom", boom), *console_urls]
