from django.urls import path

from deployments import github, views

app_name = "deployments"

urlpatterns = [
    path("webhooks/deploy", views.deploy_webhook, name="deploy-webhook"),
    path("api/rollback", views.rollback_api, name="rollback-api"),
    path("api/deploys/check", views.deploy_gate_api, name="deploy-gate"),
    path("webhooks/github", github.webhook, name="github-webhook"),
]
