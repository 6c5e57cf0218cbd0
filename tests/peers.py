"""Real peers from Debian's packages, started by the tests on free loopback ports."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.pgserver import free_port


def ensure_binary(binary: str, package: str) -> str:
    """The path of `binary`, installing `package` from Debian when root; else fail in one line."""
    path = shutil.which(binary)
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(
            ["apt-get", "update", "-qq"], check=True, env=env, timeout=600, capture_output=True
        )
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env, timeout=900,
                       capture_output=True)  # fmt: skip
        path = shutil.which(binary)
        if path:
            return path
    pytest.fail(f"{binary} not found: install it (sudo apt-get install {package})", pytrace=False)


def wait_until(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def running(argv: list[str], ready_url: str, workdir: Path):
    log = open(workdir / "peer.log", "wb")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        try:
            wait_until(ready_url)
        except TimeoutError:
            process.terminate()
            raise RuntimeError((workdir / "peer.log").read_text()[-2000:]) from None
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        log.close()


@contextlib.contextmanager
def prometheus(
    scrape_target: str,
    interval: str = "1s",
    *,
    job: str = "app",
    metrics_path: str = "/metrics",
    bearer_token: str = "",
    rule_files: tuple[Path, ...] = (),
    alertmanager_url: str = "",
):
    binary = ensure_binary("prometheus", "prometheus")
    workdir = Path(tempfile.mkdtemp(prefix="opsconsole-prom-"))
    port = free_port()
    config = (
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        f"scrape_configs:\n  - job_name: {job}\n    metrics_path: {metrics_path}\n"
        f"    static_configs:\n      - targets: ['{scrape_target}']\n"
    )
    if bearer_token:
        config += f"    authorization:\n      credentials: '{bearer_token}'\n"
    if rule_files:
        config += "rule_files:\n" + "".join(f"  - '{path}'\n" for path in rule_files)
    if alertmanager_url:
        target = alertmanager_url.split("://", 1)[1]
        config += (
            f"alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{target}']\n"
        )
    (workdir / "prometheus.yml").write_text(config)
    argv = [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    try:
        with running(argv, f"http://127.0.0.1:{port}/-/ready", workdir):
            yield f"http://127.0.0.1:{port}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def alertmanager(webhook_url: str, bearer_token: str = ""):
    binary = ensure_binary("prometheus-alertmanager", "prometheus-alertmanager")
    workdir = Path(tempfile.mkdtemp(prefix="opsconsole-am-"))
    port = free_port()
    (workdir / "alertmanager.yml").write_text(
        "route:\n  receiver: console\n  group_by: ['alertname']\n"
        "  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n"
        "receivers:\n  - name: console\n    webhook_configs:\n"
        f"      - url: '{webhook_url}'\n        send_resolved: true\n"
        + (
            f"        http_config:\n          authorization:\n            credentials: '{bearer_token}'\n"
            if bearer_token
            else ""
        )
    )
    argv = [binary, f"--config.file={workdir / 'alertmanager.yml'}", f"--storage.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]  # fmt: skip
    try:
        with running(argv, f"http://127.0.0.1:{port}/-/ready", workdir):
            yield f"http://127.0.0.1:{port}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
