from django.urls import path

from dr import views

app_name = "dr"

urlpatterns = [
    path("api/system/status", views.system_status, name="system-status"),
    path("status", views.status_page, name="status-page"),
]
