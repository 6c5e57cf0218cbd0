"""What an attacker's review of the trust boundaries found, each held shut."""

import ipaddress

import psycopg
import pytest

from opsconsole import http, outbound
from opsconsole.models import SettingChange
from tests.conftest import login


def test_a_new_environment_asks_before_it_rolls_back_and_needs_two_people(client, bob):
    from deployments.models import Environment

    login(client, bob)
    response = client.post("/admin/deployments/environment/add/", {
        "name": "sneaky", "provider": "command", "provider_config": '{"rollback": ["true"]}',
        "health_path": "/health", "endpoints": "[]", "smoke_urls": "[]", "required_variables": "[]",
        "rollback_mode": "automatic", "max_error_rate": "5", "max_avg_response_ms": "2000",
        "min_availability": "99", "watch_minutes": "0", "stable_minutes": "0",
        "stable_max_error_rate": "1", "probe_requests": "5", "probe_timeout_seconds": "5",
        "error_rate_labels": "{}", "gradual_steps": "[]", "gradual_step_seconds": "30",
        "backup_max_age_hours": "24",
        "variables-TOTAL_FORMS": "0", "variables-INITIAL_FORMS": "0",
    })  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:3000]
    env = Environment.objects.get(name="sneaky")
    assert (env.rollback_mode, env.two_person_rule) == ("ask", True)
    assert SettingChange.objects.get().changes["rollback_mode"]["to"] == "automatic"


def test_a_health_path_cannot_move_the_probes_to_another_host(db):
    from django.core.exceptions import ValidationError

    from deployments.models import Environment

    env = Environment(name="x", provider="command", provider_config={"rollback": ["true"]},
                      base_url="https://api.example.com", health_path="@attacker.example/health")  # fmt: skip
    with pytest.raises(ValidationError, match="starting with /"):
        env.full_clean()


def test_an_operator_cannot_silence_a_pager_alone(client, alice):
    from alerts.models import Channel

    sms = Channel.objects.create(name="pager", kind="log", enabled=True, config={})
    login(client, alice)
    url = f"/admin/alerts/channel/{sms.pk}/change/"
    response = client.post(url, {"name": "pager", "kind": "log", "config": "{}"})  # unticked
    assert response.status_code == 302, response.content.decode()[:2000]
    sms.refresh_from_db()
    assert sms.enabled is True and SettingChange.objects.get().changes["enabled"]["to"] is False


def test_secrets_spelled_differently_by_a_rebuilt_url_are_still_redacted():
    for url in ("https://hooks.slack.com/services/T/B/secretpath?",
                "https://hooks.slack.com/services/T/B/secretpath#",
                "HTTPS://hooks.slack.com/services/T/B/secretpath"):  # fmt: skip
        assert "secretpath" not in http.redact_url(url, [url])


def test_an_unparsable_dsn_never_quotes_its_password():
    with pytest.raises(outbound.OutboundRefused) as caught:
        outbound.pinned_conninfo("host=db password=two words")
    assert "words" not in str(caught.value)


@pytest.mark.parametrize(
    "address",
    ["64:ff9b::a9fe:a9fe", "2002:a9fe:a9fe::1", "::169.254.169.254", "64:ff9b::a00:5",
     "192.0.0.192", "198.18.0.1"],
)  # fmt: skip
def test_ipv4_hidden_in_ipv6_and_special_ranges_are_judged_as_what_they_are(address, settings):
    settings.OPSCONSOLE_OUTBOUND_ALLOW = []
    assert outbound.refusal(ipaddress.ip_address(address)) is not None


def test_an_s3_endpoint_inside_the_network_needs_the_allowlist(db, settings, tmp_path):
    import sqlite3

    from backups.backup import run_backup
    from backups.models import Backup, DatabaseTarget, StorageLocation

    settings.OPSCONSOLE_OUTBOUND_ALLOW = []
    path = tmp_path / "a.sqlite3"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    target = DatabaseTarget.objects.create(name="a", engine="sqlite", dsn=f"sqlite:///{path}")
    s3 = StorageLocation.objects.create(name="inside", kind="s3",
                                        config={"bucket": "b", "endpoint_url": "http://10.0.0.5:9000"})  # fmt: skip
    backup = run_backup(Backup.objects.create(target=target, storage=s3))
    assert backup.status == "failed" and "S3 endpoint refused" in backup.error


def test_an_unverified_approver_session_does_not_open_the_status_api(client, bob):
    client.post("/admin/login/", {"username": "bob", "password": "bob-password"})
    response = client.get("/api/system/status")
    assert response.status_code == 401


def test_only_a_superuser_sets_another_persons_password(client, bob, carol):
    from django.contrib.auth.models import Permission

    bob.user_permissions.add(*Permission.objects.filter(codename__in=["change_user", "view_user"]))
    login(client, bob)
    url = f"/admin/auth/user/{carol.pk}/password/"
    response = client.post(url, {"password1": "Taken-over-123", "password2": "Taken-over-123"})
    assert response.status_code == 403
    carol.refresh_from_db()
    assert carol.check_password("carol-password")


@pytest.mark.postgres
def test_a_sql_source_refuses_a_role_that_may_become_a_superuser(db, pg):
    from alerts.models import MetricSource

    dbname = pg.create_database("opsconsole_roles")
    with psycopg.connect(pg.dsn(dbname), autocommit=True) as conn:
        for role, opts in (("admins_x", "SUPERUSER NOLOGIN"), ("sneaky_x", "LOGIN NOINHERIT")):
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone():
                conn.execute(f"CREATE ROLE {role} {opts}")
        conn.execute("GRANT admins_x TO sneaky_x")
    dsn = pg.dsn(dbname).replace("://postgres@", "://sneaky_x@", 1)
    if "sneaky_x@" not in dsn:
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(dsn)
        dsn = urlunsplit(
            (parts.scheme, f"sneaky_x@{parts.netloc.rsplit('@', 1)[-1]}", parts.path, "", "")
        )
    src = MetricSource.objects.create(name="s", kind="sql", metric_key="k",
                                      config={"query": "select 1"}, secret=dsn)  # fmt: skip
    assert src.collect() == 0
    src.refresh_from_db()
    assert "may become one" in src.last_error


@pytest.mark.postgres
def test_restore_checks_say_pass_or_fail_never_the_data(pg, db, tmp_path):
    from backups.engines import PostgresEngine
    from backups.models import DatabaseTarget

    dbname = pg.create_database("opsconsole_checks")
    with psycopg.connect(pg.dsn(dbname), autocommit=True) as conn:
        conn.execute("CREATE TABLE users (email text); INSERT INTO users VALUES ('u1@example.com')")
    target = DatabaseTarget(name="t", engine="postgresql", dsn=pg.dsn(dbname))
    engine = PostgresEngine(target)
    problems = engine.run_checks(dbname, [], ["SELECT string_agg(email, ',')::int FROM users",
                                              "SELECT 1; DROP TABLE users"])  # fmt: skip
    assert problems == ["check 1 failed (SQLSTATE 22P02)", "check 2 failed (SQLSTATE 42601)"]
    with psycopg.connect(pg.dsn(dbname)) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1
