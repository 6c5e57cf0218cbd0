"""Back up a real PostgreSQL database, store it locally or in S3, restore it, prove it whole."""

import os
import subprocess
from pathlib import Path

import psycopg
import pytest

from alerts.models import Incident
from backups import verify
from backups.backup import run_backup
from backups.engines import postgresql as pg_engine
from backups.errors import RestoreRefused
from backups.models import Backup, BackupKey, DatabaseTarget
from backups.restore import restore_into
from backups.verify import verify_backup
from tests.backups.conftest import table_fingerprints

pytestmark = pytest.mark.postgres


def new_backup(target, storage, **fields) -> Backup:
    return Backup.objects.create(target=target, storage=storage, **fields)


def db_exists(pg, name: str) -> bool:
    with psycopg.connect(pg.admin_dsn) as conn:
        return (
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            is not None
        )


def test_backup_to_local_storage_and_restore_into_a_new_database(
    pg, target, local_storage, source_db
):
    backup = run_backup(new_backup(target, local_storage))
    assert backup.status == "succeeded", backup.error
    assert backup.id.startswith("backup-") and len(backup.sha256) == 64
    assert backup.bytes_read > 0 and backup.bytes_stored > 0
    assert backup.client_version.startswith("pg_dump (PostgreSQL)") and backup.server_version
    stored = Path(local_storage.config["path"]) / backup.storage_key
    assert stored.stat().st_size == backup.bytes_stored
    assert not list(stored.parent.glob("*.partial"))
    # The storage keeps the checksum beside the object, checkable without the console.
    check = subprocess.run(["sha256sum", "--check", stored.name + ".sha256"], cwd=stored.parent,
                           capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert check.returncode == 0 and check.stdout.strip() == f"{stored.name}: OK"
    assert backup.sha256 in (stored.parent / (stored.name + ".sha256")).read_text()

    verified = verify_backup(backup)
    assert verified.status == "verified"
    assert verified.toc_summary["TABLE"] == 4 and verified.toc_summary["TABLE DATA"] >= 3

    result = restore_into(backup, "shorts_restore_1")
    restored = pg.dsn("shorts_restore_1")
    pg._databases.append("shorts_restore_1")
    before, after = table_fingerprints(source_db), table_fingerprints(restored)
    for table in ("users", "videos", "search_logs"):
        assert after[table] == before[table], table
    assert before["logs"][0] == 1000 and after["logs"][0] == 0, "logs: schema kept, data excluded"
    assert set(result["timings"]) == {"download", "decrypt_decompress", "restore", "verify"}


def test_backup_to_s3_streams_a_multipart_upload_with_metadata(
    pg, target, s3_storage, bucket, source_db
):
    client, name = bucket
    backup = run_backup(new_backup(target, s3_storage))
    assert backup.status == "succeeded", backup.error
    head = client.head_object(Bucket=name, Key=f"prod/{backup.storage_key}")
    assert head["ContentLength"] == backup.bytes_stored
    assert head["Metadata"]["backup-id"] == backup.id
    assert head["Metadata"]["sha256"] == backup.sha256
    assert head["Metadata"]["service"] == "shorts"
    assert head["StorageClass"] == "STANDARD_IA"
    assert head["ServerSideEncryption"] == "AES256"
    assert client.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
    restore_into(backup, "shorts_from_s3")
    pg._databases.append("shorts_from_s3")
    assert (
        table_fingerprints(pg.dsn("shorts_from_s3"))["videos"]
        == table_fingerprints(source_db)["videos"]
    )


def test_the_stock_age_zstd_pg_restore_chain_restores_it_by_hand(
    pg, target, local_storage, tmp_path
):
    """Restorable without us: age -d | zstd -d | pg_restore."""
    import shutil

    if not shutil.which("age"):
        from tests.peers import ensure_binary

        ensure_binary("age", "age")
    backup = run_backup(new_backup(target, local_storage))
    key_file = tmp_path / "key.txt"
    key_file.write_text(BackupKey.current().identity.reveal() + "\n")
    stored = Path(local_storage.config["path"]) / backup.storage_key
    dbname = pg.create_database("by_hand")
    chain = f"age -d -i {key_file} {stored} | zstd -d | pg_restore --no-owner -d '{pg.dsn(dbname)}'"
    subprocess.run(["bash", "-o", "pipefail", "-c", chain], check=True, timeout=120)
    with psycopg.connect(pg.dsn(dbname)) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 500


@pytest.mark.parametrize("damage", ["flip", "truncate", "wrong_key"])
def test_damaged_backups_are_refused_before_any_database_is_created(
    pg, target, local_storage, damage
):
    backup = run_backup(new_backup(target, local_storage))
    stored = Path(local_storage.config["path"]) / backup.storage_key
    data = bytearray(stored.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x01
        stored.write_bytes(bytes(data))
        expected = "checksum mismatch"
    elif damage == "truncate":
        stored.write_bytes(bytes(data[: len(data) - 100]))
        expected = "checksum mismatch"
    else:
        BackupKey.objects.all().delete()
        BackupKey.current()  # a new key: the old backup's is gone
        expected = "wrong key"
    with pytest.raises(RestoreRefused, match=expected):
        restore_into(backup, f"never_{damage}")
    assert not db_exists(pg, f"never_{damage}")


def test_a_failing_pg_dump_fails_the_record_leaves_nothing_and_raises_an_incident(
    db, pg, local_storage
):
    missing = DatabaseTarget.objects.create(
        name="missing", engine="postgresql", dsn=pg.dsn("no_such_database")
    )
    backup = run_backup(new_backup(missing, local_storage))
    assert backup.status == "failed"
    assert "pg_dump exited with code 1" in backup.error
    assert 'database "no_such_database" does not exist' in backup.stderr_tail
    folder = Path(local_storage.config["path"])
    assert not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()]
    incident = Incident.objects.get(fingerprint=f"backup:{missing.pk}")
    assert (incident.priority, incident.status) == ("high", "triggered")


def test_a_failing_s3_backup_aborts_its_multipart_upload(db, pg, s3_storage, bucket):
    client, name = bucket
    missing = DatabaseTarget.objects.create(
        name="missing", engine="postgresql", dsn=pg.dsn("no_such_database")
    )
    assert run_backup(new_backup(missing, s3_storage)).status == "failed"
    assert client.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=name).get("KeyCount", 0) == 0


def test_the_password_never_reaches_a_command_line(db, pg, local_storage, monkeypatch):
    with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
        conn.execute("CREATE ROLE backup_user LOGIN SUPERUSER PASSWORD 'p4ss:w0rd-s3cret'")
    name = pg.create_database("pwdb")
    dsn = pg.dsn(name).replace("postgres@", "backup_user:p4ss%3Aw0rd-s3cret@")
    target = DatabaseTarget.objects.create(name="pw", engine="postgresql", dsn=dsn)
    seen = []
    real = subprocess.Popen

    envs = []

    class Recording(real):
        def __init__(self, argv, *args, **kwargs):
            env = kwargs.get("env") or {}
            envs.append(set(env))
            passfile = env.get("PGPASSFILE")
            seen.append(
                (
                    list(argv),
                    passfile
                    and (oct(os.stat(passfile).st_mode & 0o777), Path(passfile).read_text()),
                )
            )
            super().__init__(argv, *args, **kwargs)

    monkeypatch.setattr(pg_engine.subprocess, "Popen", Recording)
    backup = run_backup(new_backup(target, local_storage))
    assert backup.status == "succeeded", backup.error
    assert all("s3cret" not in " ".join(argv) and "p4ss" not in " ".join(argv) for argv, _ in seen)
    ((_, (mode, passfile)),) = [(a, p) for a, p in seen if "--format=custom" in a]
    assert mode == "0o600" and "p4ss\\:w0rd-s3cret" in passfile
    assert envs and all(
        e
        <= {"PATH", "LANG", "LC_ALL", "HOME", "TZ", "PGPASSFILE", "PGSSLMODE", "PGCONNECT_TIMEOUT"}
        for e in envs
    ), "pg_dump gets a minimal environment, not the console's"
    assert "s3cret" not in backup.error + backup.stderr_tail


def test_a_backup_record_runs_once(target, local_storage):
    backup = new_backup(target, local_storage)
    first = run_backup(backup)
    again = run_backup(Backup.objects.get(pk=backup.pk))
    assert first.status == again.status == "succeeded"
    assert again.finished_at == first.finished_at, "the re-delivered task did nothing"


def test_only_one_backup_per_target_runs_at_a_time(target, local_storage):
    running = new_backup(target, local_storage, status="running")
    second = run_backup(new_backup(target, local_storage))
    assert second.status == "failed"
    assert "another backup of this target was running" in second.error
    running.refresh_from_db()
    assert running.status == "running"


def test_the_reconciler_fails_a_backup_whose_lease_ran_out_and_aborts_its_upload(
    db, target, s3_storage, bucket
):
    from datetime import timedelta

    from django.utils import timezone

    from alerts.models import Incident
    from opsconsole.reconcile import reconcile

    client, name = bucket
    now = timezone.now()
    stalled = new_backup(target, s3_storage, status="running", started_at=now - timedelta(minutes=2),
                         lease_expires_at=now - timedelta(seconds=1), storage_key="shorts/x.dump.zst.age")  # fmt: skip
    upload = client.create_multipart_upload(Bucket=name, Key="prod/shorts/x.dump.zst.age")
    # Hours in, no bytes for half an hour (pg_dump waiting on a lock), but its worker
    # renews the lease: alive, left to its own timeout.
    alive = Backup.objects.create(target=DatabaseTarget.objects.create(name="other", engine="postgresql",
                                  dsn="postgresql://x@127.0.0.1/y"), storage=s3_storage, status="running",
                                  started_at=now - timedelta(hours=3), progress_at=now - timedelta(minutes=30),
                                  lease_expires_at=now + timedelta(seconds=40))  # fmt: skip
    assert reconcile()["expired"] == 1
    stalled.refresh_from_db()
    assert stalled.status == "failed" and "lease ran out" in stalled.error
    incident = Incident.objects.get(fingerprint=target.fingerprint())
    assert "out-of-memory" in incident.details["error"], "the incident says what to check"
    assert upload["UploadId"] not in [
        u["UploadId"] for u in client.list_multipart_uploads(Bucket=name).get("Uploads", [])
    ]
    alive.refresh_from_db()
    assert alive.status == "running"


def test_sqlite_targets_use_the_online_backup_api(db, local_storage, tmp_path):
    import sqlite3

    source = tmp_path / "app.sqlite3"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(1000)])
    target = DatabaseTarget.objects.create(
        name="embedded", engine="sqlite", dsn=f"sqlite:///{source}"
    )
    backup = run_backup(new_backup(target, local_storage))
    assert backup.status == "succeeded", backup.error
    out = tmp_path / "restored.sqlite3"
    verify.extract(backup, out)
    with sqlite3.connect(out) as conn:
        assert conn.execute("SELECT count(*), sum(x) FROM t").fetchone() == (1000, sum(range(1000)))


def test_extract_tells_time_waiting_on_storage_from_decrypting(
    db, local_storage, tmp_path, monkeypatch
):
    """The stages stream into each other; a slow store shows up as download, not decryption."""
    import sqlite3
    import time

    from backups.storages import STORAGE_KINDS

    source = tmp_path / "app.sqlite3"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE t (x)")
    target = DatabaseTarget.objects.create(
        name="embedded", engine="sqlite", dsn=f"sqlite:///{source}"
    )
    backup = run_backup(new_backup(target, local_storage))
    local = STORAGE_KINDS["local"]
    real_open = local.open_reader

    class SlowReader:
        def __init__(self, raw):
            self.raw = raw

        def read(self, size=-1):
            time.sleep(0.1)
            return self.raw.read(size)

        def close(self):
            self.raw.close()

    monkeypatch.setattr(local, "open_reader", lambda self, key: SlowReader(real_open(self, key)))
    timings = verify.extract(backup, tmp_path / "out.sqlite3")
    assert timings["download"] >= 0.2, timings
    assert timings["decrypt_decompress"] < timings["download"], timings


def test_after_a_key_rotation_old_backups_still_restore(pg, target, local_storage):
    old_key = BackupKey.current()
    before = run_backup(new_backup(target, local_storage))
    new_key = BackupKey.rotate()
    after = run_backup(new_backup(target, local_storage))
    assert (before.recipient, after.recipient) == (old_key.recipient, new_key.recipient)
    assert new_key.recipient != old_key.recipient
    assert verify_backup(before).status == "verified"
    assert verify_backup(after).status == "verified"


def test_a_policy_can_encrypt_to_a_key_the_console_does_not_keep(
    pg, target, local_storage, settings
):
    import pyrage

    vault = pyrage.x25519.Identity.generate()
    policy = target.policies.get(kind="daily")
    policy.storage, policy.recipient = local_storage, str(vault.to_public())
    policy.full_clean()
    policy.save()
    backup = run_backup(policy.start())
    assert backup.recipient == str(vault.to_public())
    with pytest.raises(RestoreRefused, match="wrong key"):
        verify_backup(backup)
    settings.BACKUPS_AGE_IDENTITIES = [str(vault)]
    assert verify_backup(Backup.objects.get(pk=backup.pk)).status == "verified"


def test_a_wrong_password_fails_the_backup_with_the_reason(db, pg, local_storage):
    if pg.password_role is None:
        pytest.skip(
            "TEST_DATABASE_URL names a server whose authentication the tests do not control"
        )
    with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
        conn.execute(f"DROP ROLE IF EXISTS {pg.password_role}")
        conn.execute(f"CREATE ROLE {pg.password_role} LOGIN PASSWORD 'right-password'")
    name = pg.create_database("pwcheck_db")
    dsn = pg.dsn(name).replace("postgres@", f"{pg.password_role}:wrong-password@")
    target = DatabaseTarget.objects.create(name="wrong pw", engine="postgresql", dsn=dsn)
    backup = run_backup(new_backup(target, local_storage))
    assert backup.status == "failed"
    assert "password authentication failed" in backup.stderr_tail
    assert "wrong-password" not in backup.error + backup.stderr_tail
    assert Incident.objects.filter(fingerprint=f"backup:{target.pk}").exists()


def test_an_abort_that_failed_is_tried_again_until_it_succeeds(db, target, s3_storage, bucket):
    from django.utils import timezone

    from backups.models import StorageLocation
    from backups.tasks import clean_up

    client, name = bucket
    failed = new_backup(target, s3_storage, status="failed", finished_at=timezone.now(),
                        storage_key="shorts/y.dump.zst.age")  # fmt: skip
    client.create_multipart_upload(Bucket=name, Key="prod/shorts/y.dump.zst.age")
    working = dict(s3_storage.config)
    # The S3 endpoint is down (nothing listens on port 9): the abort fails, nothing breaks.
    StorageLocation.objects.filter(pk=s3_storage.pk).update(
        config={**working, "endpoint_url": "http://127.0.0.1:9"}
    )
    clean_up()
    assert client.list_multipart_uploads(Bucket=name).get("Uploads")
    StorageLocation.objects.filter(pk=s3_storage.pk).update(config=working)
    clean_up()  # the next run, two minutes later: the endpoint is back
    assert not client.list_multipart_uploads(Bucket=name).get("Uploads"), failed.pk


def test_an_s3_endpoint_that_dies_between_parts_is_noticed_at_once_without_the_upload_id(
    db, s3_storage, bucket, monkeypatch
):
    """A slow dump fills a 16 MiB part in minutes; the writer does not wait for the next
    part to find out that S3 is gone. What it reports names no uploadId URL."""
    import boto3
    from botocore.config import Config

    from backups.errors import StorageError
    from backups.storages import s3

    writer = s3_storage.backend.open_writer("shorts/slow.dump.zst.age", {})
    writer.write(b"x" * 1024)  # far from a full part
    # The endpoint dies: nothing listens on port 9 any more.
    writer.client = boto3.client("s3", endpoint_url="http://127.0.0.1:9", region_name="us-east-1",
                                 aws_access_key_id="test", aws_secret_access_key="test",
                                 config=Config(retries={"max_attempts": 1}))  # fmt: skip
    monkeypatch.setattr(s3, "PROBE_EVERY", 0.0)
    with pytest.raises(StorageError) as failure:
        writer.write(b"x" * 1024)
    message = str(failure.value)
    assert message == "S3 checking the upload: EndpointConnectionError"
    assert writer.upload_id not in message and "uploadId" not in message
