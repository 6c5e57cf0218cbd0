"""A backup that fails before it streams still ends failed, and the first key is made once."""

import threading

import pytest

from backups.backup import run_backup
from backups.models import Backup, BackupKey, DatabaseTarget, StorageLocation


@pytest.fixture
def sqlite_target(db, tmp_path):
    import sqlite3

    path = tmp_path / "app.sqlite3"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    return DatabaseTarget.objects.create(name="app", engine="sqlite", dsn=f"sqlite:///{path}")


@pytest.fixture
def local(db, tmp_path):
    return StorageLocation.objects.create(
        name="here", kind="local", config={"path": str(tmp_path / "s")}
    )


def test_a_key_failure_after_the_claim_fails_the_backup_instead_of_leaving_it_running(
    sqlite_target, local, monkeypatch
):
    def broken():
        raise RuntimeError("the key table is unreachable")

    monkeypatch.setattr(BackupKey, "current", classmethod(lambda cls: broken()))
    backup = run_backup(Backup.objects.create(target=sqlite_target, storage=local))
    assert backup.status == "failed" and "key table is unreachable" in backup.error
    again = run_backup(Backup.objects.create(target=sqlite_target, storage=local))
    assert again.status == "failed", "the target is not blocked by a row left running"


def test_a_storage_failure_before_streaming_fails_the_backup(sqlite_target, monkeypatch, db):
    s3 = StorageLocation.objects.create(name="gone", kind="s3",
                                        config={"bucket": "b", "endpoint_url": "http://127.0.0.1:9"})  # fmt: skip
    backup = run_backup(Backup.objects.create(target=sqlite_target, storage=s3))
    assert backup.status == "failed" and backup.error


@pytest.mark.postgres_db
@pytest.mark.django_db(transaction=True)
def test_two_backups_at_once_on_a_fresh_install_make_one_key():
    """The first key is made on first use; two first uses at once must agree on it."""
    from django.db import connections

    barrier = threading.Barrier(4, timeout=20)
    keys, errors = [], []

    def first_use():
        try:
            barrier.wait()
            keys.append(BackupKey.current().recipient)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(set(keys)) == 1 and BackupKey.objects.filter(active=True).count() == 1
