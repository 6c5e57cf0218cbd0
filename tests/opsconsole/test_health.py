"""Health endpoints: unauthenticated, JSON, naming the failing check."""

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from opsconsole.models import WorkerHeartbeat


@pytest.fixture
def fresh_worker(db):
    WorkerHeartbeat.beat("test-worker")
    WorkerHeartbeat.beat("test-alert-path", role=WorkerHeartbeat.Role.ALERTS)


def test_liveness_needs_no_login_and_no_database(client, db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "build": "dev"}


def test_ready_is_200_when_database_migrations_and_worker_are_fine(client, fresh_worker):
    response = client.get("/health/ready")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert {name: c["ok"] for name, c in body["checks"].items()} == {
        "database": True,
        "migrations": True,
        "worker": True,
        "alert_path": True,
    }


def test_ready_is_503_naming_the_alert_path_when_it_stopped_beating(client, fresh_worker):
    WorkerHeartbeat.objects.filter(role="alerts").update(
        seen_at=timezone.now() - timedelta(seconds=45)
    )
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["alert_path"], "the jobs worker is fine"
    assert "last alert path heartbeat 45s ago" in body["checks"]["alert_path"]["detail"]


def test_ready_is_503_naming_a_stale_worker_heartbeat(client, db):
    WorkerHeartbeat.beat("alert-path", role=WorkerHeartbeat.Role.ALERTS)
    WorkerHeartbeat.objects.create(worker="old", seen_at=timezone.now() - timedelta(minutes=3))
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["worker"]
    assert "last worker heartbeat 180s ago" in body["checks"]["worker"]["detail"]


def test_ready_is_503_when_no_worker_ever_beat(client, db):
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["worker"]["detail"] == "no worker heartbeat yet"


def test_ready_is_503_naming_an_unapplied_migration(client, fresh_worker):
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM django_migrations WHERE app = 'opsconsole' AND name = '0002_roles'"
        )
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["migrations"]
    assert body["checks"]["migrations"]["detail"] == "1 unapplied migration(s)"


def test_health_reveals_no_secrets(client, fresh_worker, settings):
    text = client.get("/health/ready").content.decode() + client.get("/health").content.decode()
    assert settings.SECRET_KEY not in text
    assert "sqlite" not in text.lower() and "/" not in text.replace("\\/", "")


def test_everything_else_requires_login(client, db):
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    assert client.get("/").status_code == 302


def test_the_heartbeat_task_records_a_worker(db):
    from opsconsole.tasks import heartbeat

    heartbeat()
    assert WorkerHeartbeat.age() < timedelta(seconds=5)
