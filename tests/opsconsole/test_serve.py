"""`manage.py serve`: web server and worker together, supervised, stopped cleanly."""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import ROOT, console_env, manage, wait_for
from tests.pgserver import free_port


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def console(tmp_path):
    env = console_env(tmp_path, WEB_CONCURRENCY="1", Q_WORKERS="1")
    migrated = manage("migrate", "--noinput", env=env, timeout=180)
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    with open(tmp_path / "serve.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(port)],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def pids():
        text = (tmp_path / "serve.log").read_text()
        found = re.search(r"web pid (\d+), alert path pid (\d+), worker pid (\d+)", text)
        return found and (int(found[1]), int(found[2]), int(found[3]))

    yield process, port, pids, tmp_path / "serve.log"
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    for pid in pids() or ():
        if group_alive(pid):
            os.killpg(pid, signal.SIGKILL)


def get(port: int, path: str):
    try:
        return httpx.get(f"http://127.0.0.1:{port}{path}", timeout=2)
    except httpx.HTTPError:
        return None


def test_serve_runs_web_alert_path_and_worker_and_stops_all_on_sigterm(console):
    process, port, pids, log = console
    live = wait_for(lambda: (r := get(port, "/health")) and r.status_code == 200 and r, timeout=60)
    assert live, log.read_text()[-2000:]
    # The worker's and the alert path's heartbeats make the console ready.
    ready = wait_for(
        lambda: (r := get(port, "/health/ready")) and r.status_code == 200 and r, timeout=60
    )
    assert ready, (get(port, "/health/ready").text, log.read_text()[-2000:])
    assert ready.json()["checks"]["worker"]["ok"] is True
    assert ready.json()["checks"]["alert_path"]["ok"] is True
    web_pid, alert_path_pid, worker_pid = pids()

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0, log.read_text()[-2000:]
    assert wait_for(
        lambda: not any(group_alive(p) for p in (web_pid, alert_path_pid, worker_pid)), timeout=10
    )
    assert "did not stop in time" not in log.read_text(), "a child needed SIGKILL"
    assert get(port, "/health") is None


def restarted_worker_pids(log, name: str = "worker") -> list[int]:
    return [int(p) for p in re.findall(rf"{name} restarted \(pid (\d+)\)", log.read_text())]


@pytest.mark.parametrize("name", ["worker", "alert path"])
def test_a_dead_worker_or_alert_path_is_restarted_and_the_web_stays_up(console, name):
    process, port, pids, log = console
    assert wait_for(lambda: (r := get(port, "/health")) and r.status_code == 200, timeout=60), (
        log.read_text()
    )
    web_pid, alert_path_pid, worker_pid = pids()
    os.killpg(worker_pid if name == "worker" else alert_path_pid, signal.SIGKILL)
    assert wait_for(lambda: restarted_worker_pids(log, name), timeout=30), log.read_text()[-2000:]
    assert f"the {name} exited with code -9; the web server stays up" in log.read_text()
    assert process.poll() is None, "serve is still running"
    assert get(port, "/health").status_code == 200, "and so is the web server"
    new_worker = restarted_worker_pids(log, name)[-1]
    assert new_worker != worker_pid and group_alive(new_worker)
    # The new worker beats: the console is ready again.
    assert wait_for(
        lambda: (r := get(port, "/health/ready")) and r.status_code == 200, timeout=60
    ), get(port, "/health/ready").text
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=15) == 0
    assert wait_for(lambda: not group_alive(new_worker) and not group_alive(web_pid), timeout=10)


def test_serve_stops_everything_and_fails_when_the_web_server_dies(console):
    process, port, pids, log = console
    assert wait_for(lambda: (r := get(port, "/health")) and r.status_code == 200, timeout=60), (
        log.read_text()
    )
    web_pid, alert_path_pid, worker_pid = pids()
    os.killpg(web_pid, signal.SIGKILL)
    assert process.wait(timeout=20) != 0
    assert "the web server exited with code -9; stopped the rest" in log.read_text()
    assert wait_for(
        lambda: not group_alive(worker_pid) and not group_alive(alert_path_pid), timeout=10
    )


def test_serve_gives_up_after_repeated_worker_deaths(console, monkeypatch):
    process, port, pids, log = console
    assert wait_for(lambda: (r := get(port, "/health")) and r.status_code == 200, timeout=60), (
        log.read_text()
    )
    killed = [pids()[2]]
    os.killpg(killed[0], signal.SIGKILL)
    # Kill each restarted worker as soon as it appears: the fifth death within two
    # minutes ends serve (restarts come after 1, 2, 4 and 8 s).
    deadline = time.monotonic() + 90
    while process.poll() is None and time.monotonic() < deadline:
        for pid in restarted_worker_pids(log):
            if pid not in killed:
                killed.append(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        time.sleep(0.2)
    assert process.wait(timeout=20) != 0, log.read_text()[-2000:]
    assert "the worker exited 5 times within 120 s" in log.read_text()
    assert len(killed) == 5


def test_serve_starts_the_wal_receiver_once_a_target_has_continuous_wal(tmp_path):
    env = console_env(tmp_path, WEB_CONCURRENCY="1", Q_WORKERS="1")
    assert manage("migrate", "--noinput", env=env, timeout=180).returncode == 0
    made = manage("shell", "-c", (
        "from backups.models import *; t = DatabaseTarget.objects.create(name='shop', "
        "engine='postgresql', dsn='postgresql://u@127.0.0.1:1/shop'); "
        "WalArchive.objects.create(target=t, storage=StorageLocation.default())"
    ), env=env, timeout=120)  # fmt: skip
    assert made.returncode == 0, made.stderr
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(port)],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        assert wait_for(lambda: re.search(r"WAL receiver pid (\d+)", log.read_text()), timeout=60)
        receiver = int(re.search(r"WAL receiver pid (\d+)", log.read_text())[1])
        time.sleep(2)
        assert group_alive(receiver), log.read_text()[-2000:]
        os.killpg(receiver, signal.SIGKILL)
        assert wait_for(lambda: "WAL receiver restarted" in log.read_text(), timeout=30)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
    assert not group_alive(receiver)
