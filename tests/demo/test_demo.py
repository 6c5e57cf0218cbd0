"""`manage.py demo`: every part of the walk-through made, on real sample services."""

import psycopg
import pytest
from django.core.management import CommandError, call_command

from alerts.models import Channel, EscalationPolicy
from backups.models import BackupPolicy, DatabaseTarget
from demo import sample as demo
from deployments.models import Deployment, Environment
from dr.models import RecoveryObjective, ServiceCheck
from tests.pgserver import free_port_block

pytestmark = pytest.mark.postgres


@pytest.fixture
def demo_ports(db, pg):
    port = free_port_block(13)
    yield port
    demo.stop()
    with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{demo.SAMPLE_DATABASE}" WITH (FORCE)')


def test_the_demo_sets_up_every_part_and_can_run_again(client, pg, demo_ports, capsys):
    call_command("demo", password="pw-123", postgres_url=pg.admin_dsn, port=demo_ports)
    out = capsys.readouterr().out
    assert "alice  (operator):" in out and "password pw-123" in out
    # The server's log scrolls them away: they are kept in a file only this account reads.
    from django.conf import settings

    saved = settings.VAR_DIR / "demo-logins.txt"
    assert f"Sign-ins also saved to {saved}" in out
    assert saved.stat().st_mode & 0o777 == 0o600
    assert "password pw-123" in saved.read_text() and "bob: authenticator key" in saved.read_text()

    from django.contrib.auth.models import User

    for name, role in (("alice", "Operator"), ("bob", "Approver"), ("carol", "Viewer")):
        assert list(User.objects.get(username=name).groups.values_list("name", flat=True)) == [role]
        response = client.post("/admin/login/", {"username": name, "password": "pw-123"})
        assert response.status_code == 302, name
        page = client.get("/admin/")
        if role == "Approver":  # an approver gives a second factor first
            assert page.status_code == 302 and "/admin/second-factor/" in page.url
        else:
            assert page.status_code == 200, name
        client.logout()

    policy = EscalationPolicy.default()
    assert [(lvl.delay_minutes, [c.kind for c in lvl.channels.all()]) for lvl in policy.levels.all()] == [
        (0, ["inbox"]), (2, ["inbox"]), (4, ["inbox"]),
    ]  # fmt: skip
    assert not Channel.objects.filter(enabled=True).exclude(kind="inbox").exists()

    for env in Environment.objects.all():
        assert env.backend.live_version() == "v1.1", env.name
        assert list(env.deployments.order_by("received_at").values_list("version", flat=True)) == [
            "v1.0", "v1.1"
        ]  # fmt: skip
        assert env.stable_target().version == "v1.1"
    assert Environment.objects.get(name="production").rollback_mode == "automatic"

    assert set(DatabaseTarget.objects.values_list("name", flat=True)) == {"console", "shop"}
    shop = DatabaseTarget.objects.get(name="shop")
    assert shop.db.run_checks(demo.SAMPLE_DATABASE, shop.required_tables, shop.check_queries) == []
    assert BackupPolicy.objects.filter(target=shop).count() == 4
    assert RecoveryObjective.objects.count() == 2
    assert set(ServiceCheck.objects.filter(enabled=True).values_list("name", flat=True)) >= {
        "production API", "staging API"
    }  # fmt: skip

    # The gate: every required variable is on the provider with a good value; production
    # waits for an approver, staging may deploy.
    from deployments import gate

    for name, answer, codes in (("production", "waiting", ["approval_pending"]),
                                ("staging", "allowed", [])):  # fmt: skip
        check = gate.ask(Environment.objects.get(name=name), version="v1.2", asked_by="test",
                         user=User.objects.get(username="alice"))  # fmt: skip
        assert (check.answer, [r["code"] for r in check.reasons]) == (answer, codes), check.reasons
    staging = Environment.objects.get(name="staging")
    assert staging.variable_template.name == "shorts-api"
    assert staging.backend.variables()["LOG_LEVEL"] == "debug"
    assert not staging.check_drift()

    call_command("demo", password="pw-456", postgres_url=pg.admin_dsn, port=demo_ports)
    assert Deployment.objects.count() == 4 and Channel.objects.filter(kind="inbox").count() == 3
    assert (
        client.post("/admin/login/", {"username": "bob", "password": "pw-456"}).status_code == 302
    )


def test_demo_deploy_does_what_a_pipeline_does(
    pg, demo_ports, capsys, django_capture_on_commit_callbacks
):
    call_command("demo", password="pw", postgres_url="", port=demo_ports)
    with django_capture_on_commit_callbacks() as queued:
        call_command("demo", "deploy", "staging", "v1.2")
    staging = Environment.objects.get(name="staging")
    assert staging.backend.live_version() == "v1.2"
    newest = staging.deployments.order_by("-received_at").first()
    assert (newest.version, newest.status, newest.started_by) == ("v1.2", "verifying", "demo")
    assert len(queued) == 1, "verification and the watch are handed to a worker"
    assert "No PostgreSQL server answered" in capsys.readouterr().out

    with pytest.raises(CommandError, match="no environment named 'nowhere'"):
        call_command("demo", "deploy", "nowhere", "v1")
    with pytest.raises(CommandError, match="usage"):
        call_command("demo", "deploy", "staging")


def test_a_bad_port_is_one_line_not_a_traceback(db):
    with pytest.raises(CommandError, match="--port 70000: choose a port from 1024"):
        call_command("demo", password="pw", postgres_url="", port=70000)


def test_the_demo_refuses_production(db, settings):
    settings.OPSCONSOLE_ENV = "production"
    with pytest.raises(CommandError, match="not for production"):
        call_command("demo", password="pw", postgres_url="")
