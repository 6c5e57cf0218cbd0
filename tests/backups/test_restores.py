"""Restore requests: approval, two-person rule on replace, typed confirmation, old database kept."""

import psycopg
import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from backups.backup import run_backup
from backups.models import Backup, RestoreRequest
from tests.backups.conftest import table_fingerprints
from tests.conftest import login

pytestmark = pytest.mark.postgres


@pytest.fixture
def good_backup(target, local_storage):
    backup = run_backup(Backup.objects.create(target=target, storage=local_storage))
    assert backup.status == "succeeded", backup.error
    return backup


def databases(pg) -> set[str]:
    with psycopg.connect(pg.admin_dsn) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


def test_restore_into_a_new_database_after_approval(pg, good_backup, alice, bob, source_db):
    request = RestoreRequest(backup=good_backup, requested_by=alice)
    request.full_clean()
    request.save()
    assert request.new_database == f"{good_backup.target.db.dbname}_restore_{good_backup.id[-6:]}"
    with pytest.raises(ValidationError, match="exactly"):
        request.approve(bob, confirmation="wrong")
    request.approve(bob, confirmation=request.backup.target.name)
    RestoreRequest.objects.get(pk=request.pk).execute()
    request.refresh_from_db()
    assert request.status == "succeeded", request.error
    pg._databases.append(request.new_database)
    assert (
        table_fingerprints(pg.dsn(request.new_database))["users"]
        == table_fingerprints(source_db)["users"]
    )
    assert set(request.timings) >= {"download", "decrypt_decompress", "restore", "verify", "total"}


def test_replace_needs_a_second_person_on_production(good_backup, alice, bob):
    own = RestoreRequest.objects.create(backup=good_backup, requested_by=bob, mode="replace")
    with pytest.raises(PermissionDenied, match="two-person rule"):
        own.approve(bob, confirmation=good_backup.target.name)
    good_backup.target.production = False
    good_backup.target.save()
    own.approve(bob, confirmation=good_backup.target.name)
    assert own.status == "approved"


def test_a_replace_keeps_the_old_database_and_takes_a_safety_backup(
    pg, good_backup, alice, bob, source_db
):
    live = good_backup.target.db.dbname
    with psycopg.connect(source_db, autocommit=True) as conn:
        conn.execute("DELETE FROM users WHERE id > 100")  # the accident the restore repairs
    request = RestoreRequest.objects.create(backup=good_backup, requested_by=alice, mode="replace")
    request.approve(bob, confirmation=good_backup.target.name)
    RestoreRequest.objects.get(pk=request.pk).execute()
    request.refresh_from_db()
    assert request.status == "succeeded", request.error
    assert request.old_database.startswith(f"{live}_pre_restore_")
    pg._databases.append(request.old_database)
    with psycopg.connect(source_db) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 500, (
            "the restored data is live"
        )
    with psycopg.connect(pg.dsn(request.old_database)) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 100, (
            "the old database is kept"
        )
    safety = request.safety_backup
    assert (safety.trigger, safety.status) == ("pre-restore", "succeeded")
    with pytest.raises(PermissionDenied):
        request.drop_old_database(alice)
    request.drop_old_database(bob)
    assert request.old_database not in databases(pg)
    assert live in databases(pg)


def test_a_failed_restore_leaves_the_target_untouched(
    pg, good_backup, alice, bob, source_db, local_storage
):
    from pathlib import Path

    stored = Path(local_storage.config["path"]) / good_backup.storage_key
    stored.write_bytes(stored.read_bytes()[:-50])
    before = databases(pg)
    request = RestoreRequest.objects.create(backup=good_backup, requested_by=alice, mode="replace")
    request.approve(bob, confirmation=good_backup.target.name)
    RestoreRequest.objects.get(pk=request.pk).execute()
    request.refresh_from_db()
    assert request.status == "failed" and "checksum mismatch" in request.error
    assert databases(pg) - before == set(), "no fresh or renamed database left behind"
    with psycopg.connect(source_db) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 500


def restore_new(good_backup, alice, bob):
    request = RestoreRequest(backup=good_backup, requested_by=alice)
    request.full_clean()
    request.save()
    request.approve(bob, confirmation=request.backup.target.name)
    RestoreRequest.objects.get(pk=request.pk).execute()
    request.refresh_from_db()
    return request


def test_a_restore_failing_its_checks_drops_the_database_it_created(
    pg, good_backup, alice, bob, monkeypatch
):
    from backups.engines import PostgresEngine

    target = good_backup.target
    target.check_queries = ["SELECT count(*) > 1000000 FROM users"]
    target.save()
    created = []
    real_create = PostgresEngine.create_database
    monkeypatch.setattr(
        PostgresEngine,
        "create_database",
        lambda self, name: (real_create(self, name), created.append(name))[0],
    )
    request = restore_new(good_backup, alice, bob)
    assert request.status == "failed" and "failed its checks" in request.error
    assert created == [request.new_database], "the database was created before the checks"
    assert request.new_database not in databases(pg), "and dropped after they failed"


def test_a_pg_restore_failing_halfway_drops_the_database_it_created(
    pg, target, local_storage, alice, bob, source_db
):
    # An index on a function that reads an unqualified table: pg_restore runs it with
    # an empty search_path after loading the data, and fails there.
    with psycopg.connect(source_db, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION user_count(int) RETURNS int LANGUAGE sql IMMUTABLE "
            "AS 'SELECT $1 + (SELECT count(*)::int FROM users)'"
        )
        conn.execute("CREATE INDEX videos_by_count ON videos (user_count(views::int))")
    backup = run_backup(Backup.objects.create(target=target, storage=local_storage))
    assert backup.status == "succeeded", backup.error
    request = restore_new(backup, alice, bob)
    assert request.status == "failed" and "pg_restore exited with code" in request.error
    assert request.new_database not in databases(pg)


def test_carol_cannot_request_or_approve_in_the_admin(client, carol, good_backup, alice):
    request = RestoreRequest.objects.create(backup=good_backup, requested_by=alice)
    login(client, carol)
    assert (
        client.post(
            f"/admin/backups/restorerequest/{request.pk}/approve/", {"confirmation": "x"}
        ).status_code
        == 403
    )
    request.refresh_from_db()
    assert request.status == "requested"


def test_a_restore_whose_worker_died_is_failed_by_the_reconciler(good_backup, alice, bob):
    from datetime import timedelta

    from django.utils import timezone

    from alerts.models import Incident
    from opsconsole.reconcile import reconcile

    now = timezone.now()
    stuck = RestoreRequest.objects.create(
        backup=good_backup, requested_by=alice, decided_by=bob, status="running",
        new_database="shop_restore_x", started_at=now - timedelta(minutes=2),
        lease_expires_at=now - timedelta(seconds=1),
    )  # fmt: skip
    fresh = RestoreRequest.objects.create(
        backup=good_backup, requested_by=alice, decided_by=bob, status="running",
        new_database="shop_restore_y", started_at=now - timedelta(hours=2),
        lease_expires_at=now + timedelta(seconds=40),
    )  # fmt: skip
    assert reconcile()["expired"] == 1
    stuck.refresh_from_db(), fresh.refresh_from_db()
    assert stuck.status == "failed" and "shop_restore_x" in stuck.error
    assert fresh.status == "running", "its worker renews the lease"
    assert Incident.objects.get(fingerprint=f"restore:{stuck.pk}").priority == "high"
