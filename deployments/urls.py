from django.urls import path

from deployments import views

app_name = "deployments"

urlpatterns = [
    path("webhooks/deploy", views.deploy_webhook, name="deploy-webhook"),
    path("api/rollback", views.rollback_api, name="rollback-api"),
]
