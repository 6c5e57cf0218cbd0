"""Failover actions: approval unless automatic, recorded results, and a real standby promoted."""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from dr.models import FailoverAction, FailoverRun
from tests.helpers import run_queued
from tests.pgserver import find_bindir, free_port


def action(**fields) -> FailoverAction:
    row = FailoverAction(**fields)
    row.full_clean()
    row.save()
    return row


def test_an_action_needs_approval_by_someone_else(db, alice, bob, tmp_path):
    marker = tmp_path / "done"
    act = action(name="drain traffic", kind="command",
                 config={"argv": [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x')"]})  # fmt: skip
    run = act.request(alice, reason="primary region down")
    assert run.status == "requested" and not marker.exists()
    with pytest.raises(PermissionDenied):
        run.approve(alice, confirmation="drain traffic")
    run.approve(bob, confirmation="drain traffic")
    assert run.status == "approved" and not marker.exists(), "it runs on a worker"
    run_queued()
    run.refresh_from_db()
    assert run.status == "succeeded" and marker.exists()


def test_an_automatic_action_runs_at_once_and_a_failure_raises_an_incident(db, alice, channels):
    from alerts.models import Incident

    act = action(name="flip dns", kind="command", automatic=True,
                 config={"argv": [sys.executable, "-c", "import sys; sys.exit(4)"]})  # fmt: skip
    run = act.request(alice)
    assert run.status == "approved"
    run_queued()
    run.refresh_from_db()
    assert run.status == "failed" and "exited with code 4" in run.error
    assert Incident.objects.get(fingerprint=f"failover:{act.pk}").priority == "critical"


def test_set_variables_goes_through_the_deploy_provider(db, alice):
    from deployments.models import Environment

    env = Environment.objects.create(
        name="production", provider="local", provider_config={"port": 18300}
    )
    env.backend.varsfile.unlink(missing_ok=True)  # kept per environment name between tests
    act = action(name="read-only", kind="set_variables", automatic=True,
                 config={"environment": "production", "variables": {"READ_ONLY": "true"}})  # fmt: skip
    run = act.request(alice)
    run_queued()
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert env.backend.variables() == {"READ_ONLY": "true"}


def test_carol_cannot_request(db, carol):
    act = action(name="x", kind="command", config={"argv": ["true"]})
    with pytest.raises(PermissionDenied):
        act.request(carol)
    assert not FailoverRun.objects.exists()


def test_config_is_validated(db):
    with pytest.raises(ValidationError, match="no shell"):
        action(name="bad", kind="command", config={"argv": "rm -rf /"})
    with pytest.raises(ValidationError, match="standby's postgresql"):
        action(name="bad2", kind="promote_standby", secret="mysql://x")


@pytest.fixture
def standby(pg):
    """A streaming standby of the test cluster, on its own port, removed afterwards."""
    if pg.password_role is None:
        pytest.skip("TEST_DATABASE_URL names a server the tests cannot take a base backup of")
    bindir = find_bindir()
    root = Path(tempfile.mkdtemp(prefix="opsconsole-standby-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    run_as = []
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        for p in (root, sock):
            os.chown(p, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    primary = psycopg.conninfo.conninfo_to_dict(pg.admin_dsn)
    subprocess.run([*run_as, str(bindir / "pg_basebackup"), "-h", primary["host"], "-p", str(primary["port"]),
                    "-U", "postgres", "-D", str(data), "-R", "-X", "stream", "--checkpoint=fast"], check=True, timeout=120,
                   capture_output=True)  # fmt: skip
    port = free_port()
    process = subprocess.Popen([*run_as, str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(sock),
                                "-c", "listen_addresses=127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    try:
        for _ in range(150):
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                time.sleep(0.2)
        else:
            pytest.fail(f"the standby never accepted a connection (exit code {process.poll()})")
        yield url
    finally:
        process.terminate()
        process.wait(20)
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.postgres
def test_a_real_standby_is_promoted_and_leaves_recovery(db, standby, alice, bob):
    with psycopg.connect(standby) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
    act = action(name="promote standby", kind="promote_standby", secret=standby)
    run = act.request(alice, reason="primary lost")
    run.approve(bob, confirmation="promote standby")
    run_queued()
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.result == {"promoted": True, "in_recovery": False}
    with psycopg.connect(standby) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone()[0] is False
    again = act.request(alice)
    again.approve(bob, confirmation="promote standby")
    run_queued()
    again.refresh_from_db()
    assert again.status == "failed" and "not a standby" in again.error


def test_a_command_sees_none_of_the_consoles_environment(db, alice, bob, monkeypatch, settings):
    monkeypatch.setenv("DATABASE_URL", "postgresql://console:db-password@db/console")
    monkeypatch.setenv("KUBECONFIG", "/etc/kube/config")
    settings.OPSCONSOLE_CHILD_ENV = ["KUBECONFIG"]
    act = action(name="show env", kind="command", config={"argv": ["env"]})
    run = act.request(alice)
    run.approve(bob, confirmation="show env")
    run_queued()
    run.refresh_from_db()
    seen = dict(line.split("=", 1) for line in run.result["stdout"].splitlines() if "=" in line)
    assert {"SECRET_KEY", "OPSCONSOLE_ENCRYPTION_KEYS", "DATABASE_URL"}.isdisjoint(seen)
    assert "db-password" not in run.result["stdout"]
    assert seen["KUBECONFIG"] == "/etc/kube/config", "a variable passed through by name"
    assert set(seen) <= {"PATH", "LANG", "LC_ALL", "HOME", "TZ", "KUBECONFIG"}
