"""The console on PostgreSQL through DATABASE_URL: migrations apply and readiness sees it."""

import pytest

from tests.helpers import console_env, manage

pytestmark = pytest.mark.postgres


def test_migrate_and_readiness_on_postgresql(pg, tmp_path):
    dbname = pg.create_database()
    env = console_env(tmp_path, DATABASE_URL=pg.dsn(dbname))
    migrated = manage("migrate", "--noinput", env=env, timeout=300)
    assert migrated.returncode == 0, migrated.stderr
    probe = manage(
        "shell",
        "-c",
        "from opsconsole import health; from django.db import connection;"
        "print(connection.vendor, health.check_database(), health.check_migrations())",
        env=env,
    )
    assert probe.returncode == 0, probe.stderr
    assert "postgresql (True, 'reachable') (True, 'up to date')" in probe.stdout
    clean = manage("makemigrations", "--check", "--dry-run", env=env)
    assert clean.returncode == 0, clean.stdout


def test_the_groups_exist_on_postgresql_too(pg, tmp_path):
    import psycopg

    dbname = pg.create_database()
    env = console_env(tmp_path, DATABASE_URL=pg.dsn(dbname))
    assert manage("migrate", "--noinput", env=env, timeout=300).returncode == 0
    with psycopg.connect(pg.dsn(dbname)) as conn:
        rows = conn.execute(
            "SELECT g.name, count(gp.id) FROM auth_group g"
            " LEFT JOIN auth_group_permissions gp ON gp.group_id = g.id"
            " GROUP BY g.name ORDER BY g.name"
        ).fetchall()
    assert [name for name, _ in rows] == ["Approver", "Operator", "Viewer"]
    assert all(count > 0 for _, count in rows)
