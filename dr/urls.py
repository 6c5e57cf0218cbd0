from django.urls import path

from dr import views

app_name = "dr"

urlpatterns = [
    path("status", views.status_page, name="status-page"),
]
