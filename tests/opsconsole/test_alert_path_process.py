"""The real alert path process: it pages on its own, with no jobs worker at all, as fast as
the check's settings allow; and when it dies, a real Prometheus with the shipped rules and
a real Alertmanager say so to someone outside."""

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from django.utils import timezone

from alerts.models import Channel, Incident
from dr.models import ServiceCheck
from opsconsole.models import ApiToken, WorkerHeartbeat
from tests.helpers import ROOT, console_database_url, page_only, wait_for
from tests.peers import alertmanager, prometheus

pytestmark = pytest.mark.django_db(transaction=True)


def start_alert_path(log: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "opsconsole.settings",
        "DATABASE_URL": console_database_url(),
        "OPSCONSOLE_ENV_FILE": os.devnull,
        "OPSCONSOLE_OUTBOUND_ALLOW": "127.0.0.0/8",
        "PYTHONUNBUFFERED": "1",
    }
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "alertpath"],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def page_to(httpserver) -> None:
    page_only(Channel.objects.create(name="on-call hook", kind="webhook", secret="s", priorities=["critical"],
                                     config={"url": httpserver.url_for("/page")}))  # fmt: skip


def test_the_alert_path_alone_pages_within_the_checks_own_bound(httpserver, tmp_path):
    """No jobs worker runs at all (as when every worker is busy with a long backup): a
    failure still pages within interval + (retries - 1) x retry interval + 5 s."""
    httpserver.expect_request("/page").respond_with_data("ok")
    page_to(httpserver)
    service = socket.socket()
    service.bind(("127.0.0.1", 0))
    service.listen(16)
    port = service.getsockname()[1]
    interval, retries, retry_interval = 6, 3, 2
    check = ServiceCheck.objects.create(
        name="api", kind="tcp", config={"host": "127.0.0.1", "port": port},
        interval_seconds=interval, retries=retries, retry_interval_seconds=retry_interval,
        timeout_seconds=1,
    )  # fmt: skip
    process = start_alert_path(tmp_path / "alertpath.log")
    try:
        healthy = wait_for(
            lambda: ServiceCheck.objects.get(pk=check.pk).state == "healthy", timeout=60
        )
        assert healthy, (tmp_path / "alertpath.log").read_text()[-3000:]
        service.close()  # the service dies
        failed_at = time.monotonic()
        paged = wait_for(lambda: any(r.path == "/page" for r, _ in httpserver.log), timeout=40)
        took = time.monotonic() - failed_at
        assert paged, (tmp_path / "alertpath.log").read_text()[-3000:]
        bound = interval + (retries - 1) * retry_interval + 5
        assert took <= bound, f"first page {took:.1f} s after the failure; bound {bound} s"
        page = httpserver.log[0][0].get_json()
        assert page["event"] == "firing" and page["title"].startswith("api is unhealthy")
        assert WorkerHeartbeat.age(WorkerHeartbeat.Role.ALERTS) < timedelta(seconds=15)
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0, "SIGTERM stops every loop at once"
    finally:
        stop(process)
        service.close()


def test_prometheus_with_the_shipped_rules_pages_when_the_alert_path_dies(
    live_server, httpserver, tmp_path
):
    httpserver.expect_request("/am").respond_with_data("ok")
    _, token = ApiToken.issue("prometheus", scopes=["metrics:read"])
    WorkerHeartbeat.beat("jobs-1", role="jobs")  # the jobs worker is fine throughout
    process = start_alert_path(tmp_path / "alertpath.log")
    target = live_server.url.split("://", 1)[1]
    rules = ROOT / "docs" / "prometheus-rules.yml"

    def firing(alertname: str) -> bool:
        for request, _ in httpserver.log:
            for alert in request.get_json().get("alerts", []):
                if alert["labels"]["alertname"] == alertname and alert["status"] == "firing":
                    return True
        return False

    try:
        with (
            alertmanager(httpserver.url_for("/am")) as am,
            prometheus(
                target,
                job="opsconsole",
                bearer_token=token,
                rule_files=(rules,),
                alertmanager_url=am,
            ) as prom,  # fmt: skip
        ):

            def alert_path_age() -> float | None:
                result = httpx.get(
                    f"{prom}/api/v1/query",
                    params={"query": 'opsconsole_heartbeat_age_seconds{role="alerts"}'},
                    timeout=5,
                ).json()["data"]["result"]
                return float(result[0]["value"][1]) if result else None

            assert wait_for(lambda: (age := alert_path_age()) is not None and age < 10, 60), (
                tmp_path / "alertpath.log"
            ).read_text()[-3000:]
            time.sleep(3)  # a few evaluations with the alert path alive
            assert not firing("OpsconsoleAlertPathDown")

            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
            # Two minutes pass without a beat (the dead process cannot beat again).
            WorkerHeartbeat.objects.filter(role="alerts").update(
                seen_at=timezone.now() - timedelta(minutes=2)
            )
            assert wait_for(lambda: firing("OpsconsoleAlertPathDown"), 60), [
                r.get_json() for r, _ in httpserver.log
            ]
            assert not firing("OpsconsoleJobsWorkerDown")
    finally:
        stop(process)
    assert not Incident.objects.filter(source="alertmanager").exists(), "it went outside"


def test_a_rule_breach_pages_within_its_for_duration_plus_a_few_seconds(httpserver, tmp_path):
    from alerts.models import AlertRule, MetricSample

    httpserver.expect_request("/page").respond_with_data("ok")
    page_to(httpserver)
    AlertRule.objects.update(enabled=False)
    for_seconds = 4
    AlertRule.objects.create(
        name="queue backlog", metric_key="jobs.backlog", aggregation="last", window_seconds=0,
        comparator="above", threshold=100, for_seconds=for_seconds, priority="critical",
        message_template="backlog {value}",
    )  # fmt: skip
    process = start_alert_path(tmp_path / "alertpath.log")
    try:
        assert wait_for(lambda: WorkerHeartbeat.age(WorkerHeartbeat.Role.ALERTS), timeout=60), (
            tmp_path / "alertpath.log"
        ).read_text()[-3000:]
        breached_at = time.monotonic()
        deadline = breached_at + for_seconds + 30
        while time.monotonic() < deadline and not httpserver.log:
            MetricSample.objects.create(key="jobs.backlog", value=500, observed_at=timezone.now())
            time.sleep(0.5)
        took = time.monotonic() - breached_at
        assert httpserver.log, (tmp_path / "alertpath.log").read_text()[-3000:]
        assert took <= for_seconds + 5, f"paged {took:.1f} s after the breach began"
        assert took >= for_seconds, "not before the rule's `for` has passed"
    finally:
        stop(process)


def test_a_second_alert_path_stands_by_and_takes_over_when_the_first_dies(tmp_path):
    first = start_alert_path(tmp_path / "first.log")
    second = None
    try:
        assert wait_for(lambda: "alert path running" in (tmp_path / "first.log").read_text(), 60)
        second = start_alert_path(tmp_path / "second.log")
        assert wait_for(lambda: "standing by" in (tmp_path / "second.log").read_text(), 60), (
            tmp_path / "second.log"
        ).read_text()[-2000:]
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        assert wait_for(
            lambda: "alert path running" in (tmp_path / "second.log").read_text(), 15
        ), (tmp_path / "second.log").read_text()[-2000:]
    finally:
        stop(first)
        if second is not None:
            stop(second)
