from django.urls import path

from alerts import views

app_name = "alerts"

urlpatterns = [
    path("api/metrics", views.push_metrics, name="metrics"),
    path("webhooks/sentry", views.sentry_webhook, name="sentry-webhook"),
    path("webhooks/alertmanager", views.alertmanager_webhook, name="alertmanager-webhook"),
    path("alerts/ack/<str:token>/", views.acknowledge_link, name="ack"),
]
