"""The alert path: its loops, the reconciler and leases, /metrics and the dead-man's switch."""

import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from alerts.models import Channel, Incident, Notification
from backups.models import Backup, DatabaseTarget, StorageLocation
from dr.models import ServiceCheck
from opsconsole import alertpath, leases
from opsconsole.approvals.models import EXECUTE_TASK
from opsconsole.models import ApiToken, LoopTick, WorkerHeartbeat
from opsconsole.reconcile import reconcile
from tests.helpers import run_queued, wait_for
from tests.testapp.models import ChangeRequest


@pytest.fixture(autouse=True)
def fresh_reconciler():
    """The reconciler remembers what it re-drove; each test starts with a clean memory."""
    from opsconsole import reconcile as module

    module._redriven.clear()


@pytest.mark.django_db(transaction=True)
def test_a_late_tick_is_merged_not_queued_up_as_copies():
    """A tick that overruns by several periods is followed by one tick, not a backlog."""
    starts: list[float] = []
    first_may_end = threading.Event()

    def tick():
        starts.append(time.monotonic())
        if len(starts) == 1:
            first_may_end.wait(5)

    stop = threading.Event()
    loop = alertpath.Loop("test.merge", "unused", every=0.2)
    thread = threading.Thread(target=alertpath.run_loop, args=(loop, stop, tick))
    thread.start()
    try:
        assert wait_for(lambda: starts)
        time.sleep(1.0)  # five periods missed while the first tick runs
        first_may_end.set()
        assert wait_for(lambda: len(starts) >= 2, interval=0.01)
        time.sleep(0.1)  # less than one period later
        assert len(starts) == 2, "the missed ticks ran once, merged"
        assert wait_for(lambda: len(starts) >= 3), "then the loop keeps its cadence"
        assert starts[2] - starts[1] >= 0.18
    finally:
        alertpath.halt(stop)
        thread.join(5)
    assert LoopTick.objects.get(name="test.merge").every_seconds == 0.2


@pytest.mark.django_db(transaction=True)
def test_a_failing_tick_is_recorded_and_the_loop_goes_on():
    calls = []

    def tick():
        calls.append(1)
        raise RuntimeError("boom")

    stop = threading.Event()
    thread = threading.Thread(
        target=alertpath.run_loop, args=(alertpath.Loop("test.fail", "x", every=0.05), stop, tick)
    )
    thread.start()
    assert wait_for(lambda: len(calls) >= 3), "an error does not end the loop"
    alertpath.halt(stop)
    thread.join(5)
    assert LoopTick.objects.get(name="test.fail").error == "RuntimeError: boom"


# --- Checks: retry interval, and a hanging check holds nobody -------------------------


def test_a_failing_check_is_confirmed_at_its_retry_interval_then_keeps_its_interval(db):
    check = ServiceCheck.objects.create(
        name="api", kind="tcp", config={"host": "127.0.0.1", "port": 9},
        interval_seconds=30, retries=3, retry_interval_seconds=10,
    )  # fmt: skip
    t0 = check.next_due_at
    check.record(True, 1.0, "", t0)
    assert check.next_due_at == t0 + timedelta(seconds=30)
    failed_at = check.next_due_at
    assert check.record(False, 1.0, "refused", failed_at) == ("healthy", "degraded")
    assert check.next_due_at == failed_at + timedelta(seconds=10), "confirmed soon"
    check.record(False, 1.0, "refused", failed_at + timedelta(seconds=10))
    assert check.next_due_at == failed_at + timedelta(seconds=20)
    _, after = check.record(False, 1.0, "refused", failed_at + timedelta(seconds=20))
    assert after == "unhealthy"
    # The first page: interval + (retries - 1) x retry interval after the last good result.
    assert (failed_at + timedelta(seconds=20)) - t0 == timedelta(seconds=30 + 2 * 10)
    assert check.next_due_at == failed_at + timedelta(seconds=50), "unhealthy: every interval"


def test_a_check_without_a_retry_interval_is_refused(db):
    from django.core.exceptions import ValidationError

    check = ServiceCheck(name="x", kind="tcp", config={"host": "127.0.0.1", "port": 9},
                         retry_interval_seconds=0)  # fmt: skip
    with pytest.raises(ValidationError, match="At least one second"):
        check.full_clean()


@pytest.mark.django_db(transaction=True)
def test_a_hanging_check_does_not_hold_the_next_run_of_another(httpserver):
    import socket

    from dr import health
    from dr.models import CheckResult

    silent = socket.socket()  # accepts connections, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        httpserver.expect_request("/up").respond_with_data("ok")
        hang = ServiceCheck.objects.create(
            name="hangs", kind="http", timeout_seconds=4, interval_seconds=30,
            config={"url": f"http://127.0.0.1:{silent.getsockname()[1]}/", "expected_status": 200},
        )  # fmt: skip
        fast = ServiceCheck.objects.create(
            name="fast", kind="http", interval_seconds=30,
            config={"url": httpserver.url_for("/up"), "expected_status": 200},
        )  # fmt: skip
        assert health.tick() == 2
        assert wait_for(lambda: CheckResult.objects.filter(service_check=fast).exists(), 3)
        ServiceCheck.objects.filter(pk=fast.pk).update(next_due_at=timezone.now())
        assert health.tick() == 1, "the hanging check is still running: not started twice"
        assert wait_for(lambda: CheckResult.objects.filter(service_check=fast).count() == 2, 3)
        assert not CheckResult.objects.filter(service_check=hang).exists(), "still hanging"
        assert wait_for(lambda: CheckResult.objects.filter(service_check=hang).exists(), 8)
    finally:
        silent.close()


# --- Leases -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_held_lease_is_renewed_and_beats_the_jobs_heartbeat(settings):
    settings.OPSCONSOLE_LEASE_SECONDS = 4  # renewed every second
    request = ChangeRequest.objects.create(status="running", lease_expires_at=leases.expiry())
    first = request.lease_expires_at
    with leases.held(request):
        renewed = wait_for(
            lambda: ChangeRequest.objects.get(pk=request.pk).lease_expires_at > first, timeout=5
        )
    assert renewed, "the lease was renewed while the work ran"
    assert WorkerHeartbeat.age(WorkerHeartbeat.Role.JOBS) < timedelta(seconds=5)
    assert reconcile()["expired"] == 0


# --- Stranded work: re-driven on the ORM broker --------------------------------------------


def queued_tasks() -> list[tuple[str, tuple]]:
    return [
        (t["func"], tuple(t["args"]))
        for t in (SignedPackage.loads(row.payload) for row in OrmQ.objects.order_by("pk"))
    ]


@pytest.fixture
def runnable(monkeypatch):
    monkeypatch.setattr(ChangeRequest, "run", lambda self: {})


def approved(minutes_ago: float) -> ChangeRequest:
    at = timezone.now() - timedelta(minutes=minutes_ago)
    return ChangeRequest.objects.create(status="approved", requested_at=at, decided_at=at)


def test_an_approved_request_whose_task_was_lost_is_re_driven_and_runs_once(db, runnable):
    lost = approved(2)
    just_now = approved(0)  # its task may not be in the broker yet: left alone
    assert reconcile()["redriven"] == 1
    assert queued_tasks() == [(EXECUTE_TASK, ("testapp.ChangeRequest", lost.pk))]
    assert reconcile()["redriven"] == 0, "not again while its task waits in the queue"
    run_queued()
    lost.refresh_from_db(), just_now.refresh_from_db()
    assert lost.status == "succeeded"
    assert just_now.status == "approved"


def test_a_task_taken_by_a_dead_cluster_is_unlocked_not_copied(db):
    from opsconsole.tasks import enqueue

    stuck = approved(2)
    enqueue(EXECUTE_TASK, "testapp.ChangeRequest", stuck.pk)
    # A cluster took it (the ORM broker locks it for an hour) and died before running it.
    OrmQ.objects.update(lock=timezone.now() + timedelta(hours=1))
    assert reconcile()["redriven"] == 1
    (row,) = OrmQ.objects.all()
    assert row.lock <= timezone.now(), "any cluster may take it now"


def test_a_queued_backup_whose_task_waits_is_left_alone(db):
    from opsconsole.tasks import enqueue

    target = DatabaseTarget.objects.create(name="t", engine="sqlite", dsn="sqlite:////tmp/x.db")
    storage = StorageLocation.objects.first() or StorageLocation.objects.create(
        name="local", kind="local", config={"path": "/tmp/opsconsole-test-store"}
    )
    waiting = Backup.objects.create(target=target, storage=storage,
                                    created_at=timezone.now() - timedelta(minutes=10))  # fmt: skip
    enqueue("backups.tasks.run_backup", waiting.pk)  # behind four long jobs: fine
    assert reconcile()["redriven"] == 0
    OrmQ.objects.all().delete()  # the cluster that held it died
    assert reconcile()["redriven"] == 1
    assert queued_tasks() == [("backups.tasks.run_backup", (waiting.pk,))]


# --- Deliveries: a re-send after a crash carries the same idempotency key -----------------


def test_a_send_cut_short_is_sent_again_with_the_same_idempotency_key(db, httpserver):
    from alerts.incidents import raise_incident
    from alerts.notify import deliver_due
    from tests.helpers import page_only

    httpserver.expect_request("/hook").respond_with_data("ok")
    page_only(Channel.objects.create(name="hook", kind="webhook", secret="s3cret", priorities=["critical"],
                                     config={"url": httpserver.url_for("/hook")}))  # fmt: skip
    raise_incident(source="test", fingerprint="x", title="down", priority="critical")
    run_queued()
    (n,) = Notification.objects.all()
    assert n.status == "sent"
    # The process died after the receiver got it and before the row said so.
    Notification.objects.filter(pk=n.pk).update(
        status="sending", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert reconcile()["expired"] == 1
    assert deliver_due() == 1
    first, second = (request for request, _ in httpserver.log)
    key = first.headers["Idempotency-Key"]
    assert key == f"opsconsole-notification-{n.pk}" == second.headers["Idempotency-Key"]
    assert first.get_json()["delivery_id"] == second.get_json()["delivery_id"] == key


# --- /metrics --------------------------------------------------------------------------------


def test_metrics_need_a_token_with_their_own_scope(client, db):
    _, other = ApiToken.issue("status", scopes=["status:read"])
    _, token = ApiToken.issue("prometheus", scopes=["metrics:read"])
    assert client.get("/metrics").status_code == 401
    refused = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {other}")
    assert refused.status_code == 403 and "metrics:read" in refused.json()["error"]
    WorkerHeartbeat.beat("w", role="jobs")
    Incident.objects.create(fingerprint="f", title="t", priority="critical", source="x")
    LoopTick.objects.create(name="dr.checks", every_seconds=1, started_at=timezone.now(),
                            finished_at=timezone.now() - timedelta(seconds=7), lag_ms=250)  # fmt: skip
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'opsconsole_heartbeat_age_seconds{role="jobs"}' in body
    assert 'opsconsole_open_incidents{priority="critical"} 1.0' in body
    assert 'opsconsole_loop_lag_seconds{loop="dr.checks"} 0.25' in body
    assert 'opsconsole_queue_depth{queue="jobs"}' in body
    assert 'opsconsole_queue_depth{queue="notifications"}' in body
    age = next(line for line in body.splitlines()
               if line.startswith('opsconsole_loop_last_tick_age_seconds{loop="dr.checks"}'))  # fmt: skip
    assert 7 <= float(age.split()[-1]) < 60


# --- The dead-man's switch -----------------------------------------------------------------


def all_loops_on_time():
    from django_q.models import Schedule

    now = timezone.now()
    Schedule.objects.filter(name="opsconsole.heartbeat").update(next_run=now)
    for loop in alertpath.registered():
        LoopTick.objects.update_or_create(
            name=loop.name,
            defaults={"every_seconds": loop.every, "started_at": now, "finished_at": now},
        )
    WorkerHeartbeat.beat("jobs-1", role="jobs")


def test_the_dead_mans_switch_pings_only_when_the_whole_alert_path_is_on_time(
    db, httpserver, settings
):
    assert alertpath.ping_dead_mans_switch() == "off", "no URL: nothing is sent"
    settings.OPSCONSOLE_HEARTBEAT_URL = httpserver.url_for("/ping/abc")
    httpserver.expect_request("/ping/abc", method="GET").respond_with_data("OK")
    httpserver.expect_request("/ping/abc/fail", method="POST").respond_with_data("OK")
    all_loops_on_time()
    assert alertpath.ping_dead_mans_switch() == "ok"
    LoopTick.objects.filter(name="dr.checks").update(
        finished_at=timezone.now() - timedelta(minutes=2)
    )
    assert alertpath.ping_dead_mans_switch() == "fail"
    (ok, _), (fail, _) = httpserver.log
    assert ok.method == "GET"
    assert fail.path == "/ping/abc/fail"
    assert "dr.checks: last tick 120 s ago" in fail.get_data(as_text=True)


def test_the_dead_mans_switch_says_fail_when_the_jobs_worker_is_silent(db, httpserver, settings):
    settings.OPSCONSOLE_HEARTBEAT_URL = httpserver.url_for("/ping")
    httpserver.expect_request("/ping/fail", method="POST").respond_with_data("OK")
    all_loops_on_time()
    WorkerHeartbeat.objects.filter(role="jobs").update(
        seen_at=timezone.now() - timedelta(minutes=10)
    )
    assert alertpath.ping_dead_mans_switch() == "fail"
    assert "jobs worker: last heartbeat 600 s ago" in httpserver.log[0][0].get_data(as_text=True)


# --- Stranded work on the Redis broker ------------------------------------------------------


@pytest.fixture
def redis_broker(monkeypatch, tmp_path):
    """A real redis-server on a free port, and django-q2 pointed at it instead of the ORM."""
    import subprocess

    import redis
    from django_q.conf import Conf

    from tests.peers import ensure_binary
    from tests.pgserver import free_port

    port = free_port()
    server = subprocess.Popen(
        [ensure_binary("redis-server", "redis-server"), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    connection = redis.from_url(url)
    assert wait_for(lambda: _pings(connection), 10), "redis-server did not start"
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", url)
    yield connection
    server.terminate()
    server.wait(10)


def _pings(connection) -> bool:
    import redis

    try:
        return connection.ping()
    except redis.ConnectionError:
        return False


def test_on_redis_a_task_a_dead_cluster_took_is_queued_again_once(db, redis_broker, runnable):
    from django_q.brokers import get_broker

    from opsconsole.tasks import enqueue

    broker = get_broker()
    lost = approved(2)
    waiting = approved(2)
    enqueue(EXECUTE_TASK, "testapp.ChangeRequest", waiting.pk)
    # The cluster took `lost`'s task (BLPOP: gone from the list) and died with it.
    assert broker.queue_size() == 1
    assert reconcile()["redriven"] == 1
    tasks = [SignedPackage.loads(p) for p in redis_broker.lrange(broker.list_key, 0, -1)]
    assert sorted(t["args"][1] for t in tasks) == sorted([lost.pk, waiting.pk])
    assert reconcile()["redriven"] == 0, "queued again once, not on every pass"
    assert broker.queue_size() == 2
    assert not OrmQ.objects.exists(), "nothing went to the ORM broker"


# --- Take-overs: a worker that was only cut off does not carry on ------------------------


def test_a_worker_whose_lease_was_taken_over_cannot_record_success(db, monkeypatch):
    def run(self):
        # Cut off from the database for a whole lease: the reconciler fails it meanwhile.
        ChangeRequest.objects.filter(pk=self.pk).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )
        assert reconcile()["expired"] == 1
        with pytest.raises(leases.LeaseLost):
            leases.check()  # what a gradual rollback asks before its next traffic share
        return {}

    monkeypatch.setattr(ChangeRequest, "run", run)
    request = approved(0)
    request.execute()
    request.refresh_from_db()
    assert request.status == "failed" and "lease ran out" in request.error, "the verdict stands"


def test_a_renewal_does_not_steal_back_a_lease_that_was_taken_over(db):
    request = ChangeRequest.objects.create(
        status="running", started_at=timezone.now(), lease_expires_at=leases.expiry()
    )
    lease = leases.Lease(request)
    lease.renew()
    assert not lease.lost.is_set()
    ChangeRequest.objects.filter(pk=request.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert reconcile()["expired"] == 1
    lease.renew()
    assert lease.lost.is_set()
    request.refresh_from_db()
    assert request.status == "failed" and request.lease_expires_at > timezone.now()


def test_rows_running_from_before_leases_existed_are_settled_too(db):
    old = ChangeRequest.objects.create(
        status="running", started_at=timezone.now() - timedelta(minutes=5)
    )
    new = ChangeRequest.objects.create(status="running", started_at=timezone.now())
    assert reconcile()["expired"] == 1
    old.refresh_from_db(), new.refresh_from_db()
    assert (old.status, new.status) == ("failed", "running")


def test_work_lost_over_an_hour_ago_is_failed_not_started_late(db, runnable):
    stale = approved(90)
    assert reconcile() == {"expired": 0, "redriven": 0, "given_up": 1}
    stale.refresh_from_db()
    assert stale.status == "failed" and "waited over an hour" in stale.error
    assert not OrmQ.objects.exists()


# --- What keeps the dead-man's switch from saying "ok" ------------------------------------


def test_a_check_hanging_past_its_timeout_and_a_stalled_scheduler_count_as_trouble(db):
    from django_q.models import Schedule

    all_loops_on_time()
    assert alertpath.alert_path_trouble() == []
    ServiceCheck.objects.create(
        name="hangs", kind="tcp", config={"host": "127.0.0.1", "port": 9},
        timeout_seconds=5, next_due_at=timezone.now() - timedelta(seconds=60),
    )  # fmt: skip
    Schedule.objects.filter(name="opsconsole.heartbeat").update(
        next_run=timezone.now() - timedelta(minutes=5)
    )
    trouble = alertpath.alert_path_trouble()
    assert "checks: 1 overdue (hangs)" in trouble
    assert any(t.startswith("jobs scheduler: the heartbeat schedule is 30") for t in trouble)


def test_a_loop_hung_for_minutes_is_named_for_the_watchdog():
    alertpath.busy_since["dr.checks"] = time.monotonic() - 600
    try:
        assert "dr.checks" in alertpath.hung_loops()
    finally:
        alertpath.busy_since["dr.checks"] = None
    assert "dr.checks" not in alertpath.hung_loops()


def test_a_child_check_sees_its_parents_state_as_the_database_has_it_now(db):
    parent = ServiceCheck.objects.create(
        name="db", kind="tcp", config={"host": "127.0.0.1", "port": 9}
    )
    child = ServiceCheck.objects.create(name="api", kind="tcp", parent=parent,
                                        config={"host": "127.0.0.1", "port": 9})  # fmt: skip
    child = ServiceCheck.objects.select_related("parent").get(pk=child.pk)
    ServiceCheck.objects.filter(pk=parent.pk).update(state="unhealthy")  # another thread, just now
    assert child.parent.state == "unknown", "the snapshot is stale"
    assert child.parent_unhealthy() == parent
