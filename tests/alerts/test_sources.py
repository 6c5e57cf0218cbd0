"""Pull sources against real peers: Prometheus, an HTTP JSON endpoint, PostgreSQL."""

import time
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from alerts.models import MetricSample, MetricSource
from tests.peers import prometheus


def source(kind, name=None, **fields):
    row = MetricSource(
        name=name or f"{kind} source", kind=kind, metric_key=f"pulled.{kind}", **fields
    )
    row.full_clean()
    row.save()
    return row


def test_http_json_reads_a_number_at_a_path(db, httpserver):
    httpserver.expect_request("/stats", headers={"Authorization": "Bearer s3"}).respond_with_json(
        {"api": {"error_rate": 3.5, "series": [10, 20]}}
    )
    src = source("http_json", config={"url": httpserver.url_for("/stats"), "path": "api.error_rate"},
                 secret="Bearer s3", labels={"service": "api"})  # fmt: skip
    assert src.collect() == 1
    sample = MetricSample.objects.get()
    assert (sample.key, sample.value, sample.labels) == (
        "pulled.http_json",
        3.5,
        {"service": "api"},
    )
    src.refresh_from_db()
    assert src.last_error == "" and src.last_success_at is not None


def test_a_failing_source_records_the_error_and_stores_nothing(db, httpserver):
    httpserver.expect_request("/stats").respond_with_json({"api": {}})
    src = source(
        "http_json", config={"url": httpserver.url_for("/stats"), "path": "api.error_rate"}
    )
    assert src.collect() == 0
    src.refresh_from_db()
    assert "no 'error_rate' in the document" in src.last_error
    assert src.last_success_at is None
    assert not MetricSample.objects.exists()


def test_source_config_is_validated(db):
    with pytest.raises(ValidationError, match="'path'"):
        source("http_json", config={"url": "https://x.example/"})
    with pytest.raises(ValidationError, match="must be a SELECT"):
        source("sql", config={"query": "DELETE FROM api_logs"}, secret="postgresql://x/y")
    with pytest.raises(ValidationError, match="PromQL"):
        source("prometheus", config={"url": "http://127.0.0.1:9090"})


def reader_dsn(pg, dbname: str, role: str = "metrics_reader", grant: str = "") -> str:
    """A login role that can only read `api_logs` (the throwaway cluster trusts it)."""
    with psycopg.connect(pg.dsn(dbname), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
        if not exists:
            conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT SELECT ON api_logs TO {role}")
        if grant:
            conn.execute(f"GRANT {grant} TO {role}")
    parts = urlsplit(pg.dsn(dbname))
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{role}@{host}", parts.path, parts.query, ""))


@pytest.fixture
def logs_db(pg):
    dbname = pg.create_database("opsconsole_app")
    with psycopg.connect(pg.dsn(dbname), autocommit=True) as conn:
        conn.execute("CREATE TABLE api_logs (status int, at timestamptz default now())")
        conn.execute("INSERT INTO api_logs (status) SELECT CASE WHEN g % 10 = 0 THEN 500 ELSE 200 END "
                     "FROM generate_series(1, 100) g")  # fmt: skip
    return dbname


def tables(pg, dbname) -> set[str]:
    with psycopg.connect(pg.dsn(dbname)) as conn:
        return {
            r[0]
            for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }


@pytest.mark.postgres
def test_sql_computes_the_error_rate_read_only_with_a_timeout(db, pg, logs_db):
    dsn = reader_dsn(pg, logs_db)
    query = ("SELECT 100.0 * count(*) FILTER (WHERE status >= 500) / count(*) AS error_rate "
             "FROM api_logs WHERE at > now() - interval '5 minutes'")  # fmt: skip
    src = source("sql", config={"query": query, "timeout_ms": 2000}, secret=dsn)
    assert src.collect() == 1
    assert MetricSample.objects.get().value == pytest.approx(10.0)

    writer = source("sql", name="writer", secret=dsn,
                    config={"query": "WITH x AS (DELETE FROM api_logs RETURNING 1) SELECT count(*) FROM x"})  # fmt: skip
    assert writer.collect() == 0
    writer.refresh_from_db()
    assert "read-only" in writer.last_error
    slow = MetricSource.objects.create(name="slow", kind="sql", metric_key="slow",
                                       config={"query": "SELECT pg_sleep(5)", "timeout_ms": 300}, secret=dsn)  # fmt: skip
    assert slow.collect() == 0
    slow.refresh_from_db()
    assert "statement timeout" in slow.last_error


@pytest.mark.postgres
def test_sql_runs_exactly_one_statement(db, pg, logs_db):
    escape = "select 1; commit; begin read write; create table pwned (x int)"
    src = source("sql", config={"query": escape}, secret=reader_dsn(pg, logs_db))
    assert src.collect() == 0
    src.refresh_from_db()
    assert "multiple commands" in src.last_error
    assert "pwned" not in tables(pg, logs_db)


@pytest.mark.postgres
def test_sql_refuses_a_superuser_so_no_program_runs_and_no_file_is_read(db, pg, logs_db, tmp_path):
    marker = tmp_path / "ran"
    escapes = [
        f"select 1; COPY (select 1) TO PROGRAM 'touch {marker}'",
        "select 1, pg_read_file('/etc/hostname')",
        "select 1",
    ]
    for i, query in enumerate(escapes):
        src = source("sql", name=f"escape {i}", config={"query": query}, secret=pg.dsn(logs_db))
        assert src.collect() == 0
        src.refresh_from_db()
        assert "is a superuser" in src.last_error and "Connect as a role" in src.last_error
    assert not marker.exists()
    assert not MetricSample.objects.exists()


@pytest.mark.postgres
@pytest.mark.parametrize(
    "power", ["pg_read_server_files", "pg_write_server_files", "pg_execute_server_program"]
)
def test_sql_refuses_a_role_that_reaches_the_servers_files_or_programs(db, pg, logs_db, power):
    dsn = reader_dsn(pg, logs_db, role=f"reader_{power}", grant=power)
    src = source("sql", config={"query": "select 1"}, secret=dsn)
    assert src.collect() == 0
    src.refresh_from_db()
    assert f"a member of {power}" in src.last_error


def test_prometheus_instant_query_against_a_real_server(db, httpserver):
    httpserver.expect_request("/metrics").respond_with_data(
        '# TYPE app_error_rate gauge\napp_error_rate{route="/api/videos"} 7.5\napp_error_rate{route="/health"} 0\n',
        content_type="text/plain; version=0.0.4",
    )
    target = httpserver.url_for("/").split("//")[1].rstrip("/")
    with prometheus(target) as url:
        src = source("prometheus", config={"url": url, "query": "app_error_rate"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and src.collect() < 2:
            MetricSample.objects.all().delete()
            time.sleep(0.5)
        values = dict(MetricSample.objects.values_list("labels_key", "value"))
    assert values[f"instance={target},job=app,route=/api/videos"] == 7.5
    assert values[f"instance={target},job=app,route=/health"] == 0


def test_the_sources_loop_runs_only_due_sources(db, httpserver):
    from alerts.metrics import collect_due as collect_sources

    httpserver.expect_request("/v").respond_with_json({"v": 1})
    src = source(
        "http_json", config={"url": httpserver.url_for("/v"), "path": "v"}, interval_seconds=60
    )
    assert collect_sources() == 1
    assert collect_sources() == 0, "not due again for a minute"
    MetricSource.objects.filter(pk=src.pk).update(last_run_at=timezone.now() - timedelta(minutes=2))
    assert collect_sources() == 1
