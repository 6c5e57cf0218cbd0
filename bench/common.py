"""Shared set-up for the benchmarks: a PostgreSQL database, the console migrated on it.

BENCH_DATABASE_URL names a server to use; otherwise a throwaway cluster is
started (the same one the tests use). Each script prints its numbers and the
ratio to a baseline measured in the same run, because this machine is shared.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pgserver import PostgresServer, postgres_server  # noqa: E402

LAST_ADMIN = ""


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB, Python {platform.python_version()}"


@contextlib.contextmanager
def console_database():
    """Yield the console's environment, with Django set up against a fresh PostgreSQL database."""
    external = os.environ.get("BENCH_DATABASE_URL")
    with contextlib.ExitStack() as stack:
        server = PostgresServer(external) if external else stack.enter_context(postgres_server())
        dbname = server.create_database("opsconsole_bench")
        var_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="opsconsole-bench-"))
        env = {
            "DATABASE_URL": server.dsn(dbname),
            "OPSCONSOLE_VAR_DIR": var_dir,
            "OPSCONSOLE_ENV_FILE": os.devnull,
            "DJANGO_SETTINGS_MODULE": "opsconsole.settings",
            "LOG_LEVEL": "WARNING",
            "SECRET_KEY": "bench-secret-key-" + "x" * 40,
            # The sample services and receivers the benchmarks talk to are on loopback.
            "OPSCONSOLE_OUTBOUND_ALLOW": "127.0.0.0/8",
        }
        os.environ.update(env)
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        global LAST_ADMIN
        LAST_ADMIN = server.admin_dsn
        try:
            yield {**os.environ, **env, "BENCH_PG_ADMIN_URL": server.admin_dsn}
        finally:
            from django.db import connections

            connections.close_all()
            if external:
                server.drop_databases()


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        argv,
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@contextlib.contextmanager
def gunicorn(env: dict[str, str], workers: int = 2):
    """The console under gunicorn on a free port; yields its base URL once /health answers
    (`gunicorn.pid` is its master's process id meanwhile)."""
    import httpx

    from tests.pgserver import free_port

    port = free_port()
    log = Path(tempfile.mkdtemp()) / "gunicorn.log"
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "opsconsole.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--timeout",
        "120",
    ]
    web = start(argv, env, log)
    gunicorn.pid = web.pid
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base
    finally:
        stop(web)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children (gunicorn's workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for each in pids:
        with contextlib.suppress(OSError):
            # Fields after the command's closing parenthesis; utime and stime are 14 and 15.
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def stop(process: subprocess.Popen) -> None:
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 50):.3f} s, p95 {percentile(values, 95):.3f} s, "
        f"max {max(values):.3f} s, mean {statistics.fmean(values):.3f} s"
    )
