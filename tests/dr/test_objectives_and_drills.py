"""RPO from real backup records, a real drill on the test PostgreSQL, and the breach incidents."""

import re
from datetime import timedelta

import psycopg
import pytest
from django.utils import timezone

from alerts.models import Incident
from backups.backup import run_backup
from backups.models import Backup, DatabaseTarget
from dr.drills import check_objectives, run_drill
from dr.models import RecoveryDrill, RecoveryObjective

pytestmark = pytest.mark.postgres


@pytest.fixture
def target(db, pg, tmp_path):
    from backups.models import StorageLocation

    name = pg.create_database("drilled")
    with psycopg.connect(pg.dsn(name), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE users (id int primary key); INSERT INTO users SELECT generate_series(1, 100)"
        )
    target = DatabaseTarget.objects.create(name="drilled", engine="postgresql", dsn=pg.dsn(name),
                                           required_tables=["users"], check_queries=["SELECT count(*) = 100 FROM users"])  # fmt: skip
    storage = StorageLocation.objects.create(
        name="drill store", kind="local", config={"path": str(tmp_path / "s")}
    )
    assert run_backup(Backup.objects.create(target=target, storage=storage)).status == "succeeded"
    return target


def databases(pg) -> set[str]:
    with psycopg.connect(pg.admin_dsn) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


def test_a_drill_restores_checks_times_and_drops_the_scratch_database(pg, target):
    RecoveryObjective.objects.create(target=target, rto_target_minutes=60)
    before = databases(pg)
    drill = run_drill(target)
    assert drill.status == "succeeded", drill.error
    assert drill.duration_seconds > 0 and drill.rto_met is True
    assert set(drill.timings) == {"download", "decrypt_decompress", "restore", "verify"}
    assert drill.scratch_database.startswith("drill_") and databases(pg) == before, (
        "scratch dropped"
    )


def test_a_drill_of_a_broken_backup_fails_with_an_incident(pg, target):
    from pathlib import Path

    backup = target.newest_good_backup()
    path = Path(backup.storage.config["path"]) / backup.storage_key
    path.write_bytes(path.read_bytes()[:-10])
    before = databases(pg)
    drill = run_drill(target)
    assert drill.status == "failed" and "checksum mismatch" in drill.error
    assert Incident.objects.get(fingerprint=f"drill:{target.pk}").priority == "high"
    assert databases(pg) == before


def test_rpo_and_rto_come_from_real_records_and_breaches_go_through_the_door(pg, target):
    objective = RecoveryObjective.objects.create(
        target=target, rpo_target_minutes=60, rto_target_minutes=240
    )
    assert objective.live_rpo() < timedelta(minutes=1)
    assert objective.measured_rto() is None
    check_objectives()
    incident = Incident.objects.get(fingerprint=f"objective:{objective.pk}")
    assert incident.priority == "medium"
    assert "no successful drill in the last 31 days" in incident.details["problems"]

    run_drill(target)
    assert objective.measured_rto() is not None
    check_objectives()
    incident.refresh_from_db()
    assert incident.status == "resolved"

    Backup.objects.filter(target=target).update(created_at=timezone.now() - timedelta(hours=3))
    check_objectives()
    reopened = (
        Incident.objects.filter(fingerprint=f"objective:{objective.pk}")
        .exclude(status="resolved")
        .get()
    )
    assert any("RPO 180 min exceeds 60 min" in p for p in reopened.details["problems"])


def test_measured_rto_is_the_median_of_recent_drills(db, target):
    objective = RecoveryObjective.objects.create(target=target)
    for seconds in (100, 300, 200):
        RecoveryDrill.objects.create(target=target, status="succeeded", duration_seconds=seconds)
    RecoveryDrill.objects.create(target=target, status="failed", duration_seconds=5)
    assert objective.measured_rto() == timedelta(seconds=200)


def test_the_dashboard_shows_rpo_and_rto_against_targets_in_colour(client, carol, target):
    from tests.conftest import login

    RecoveryObjective.objects.create(target=target, rpo_target_minutes=60, rto_target_minutes=240)
    page = login(client, carol).get("/admin/").content.decode()
    panel = page.split('id="panel-objectives"')[1].split("</section>")[0]
    assert "drilled" in panel and "/ 60 min" in panel and "no drill" in panel
    assert re.search(r'class="state-ok"[^>]*>0 / 60 min', panel)
    assert re.search(r'class="state-bad"[^>]*>never', panel)


def test_the_admin_list_shows_the_same_rpo_and_rto(admin_client, target):
    RecoveryObjective.objects.create(target=target, rpo_target_minutes=60)
    page = admin_client.get("/admin/dr/recoveryobjective/").content.decode()
    assert '<span class="state-ok">0 / 60 min</span>' in page
    assert '<span class="state-warn">no drill / 240 min</span>' in page
