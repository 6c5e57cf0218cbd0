"""A process killed in the middle of streaming a backup to S3: the reconciler cleans up
after it as soon as its lease runs out."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import psycopg
import pytest
from django.utils import timezone

from backups.models import Backup, DatabaseTarget
from tests.helpers import ROOT, console_database_url

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_kill_mid_stream_then_the_reconciler_fails_it_and_aborts_the_upload(pg, s3_storage, bucket):
    client, name = bucket
    big = pg.create_database("big")
    with psycopg.connect(pg.dsn(big), autocommit=True) as conn:
        # Incompressible enough that the dump takes a few seconds to stream.
        conn.execute("CREATE TABLE blob AS SELECT g, md5(g::text) || md5((g * 7)::text) AS x "
                     "FROM generate_series(1, 1500000) g")  # fmt: skip
    target = DatabaseTarget.objects.create(
        name="big", engine="postgresql", dsn=pg.dsn(big), exclude_table_data=[]
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "opsconsole.settings",
        "DATABASE_URL": console_database_url(),
        "OPSCONSOLE_ENV_FILE": os.devnull,
        "OPSCONSOLE_OUTBOUND_ALLOW": "127.0.0.0/8",  # moto's S3 endpoint is on loopback
        "OPSCONSOLE_LEASE_SECONDS": "4",
    }
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "backup", "big", "--storage", s3_storage.name],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            running = Backup.objects.filter(target=target, status="running").first()
            if (
                running and client.list_multipart_uploads(Bucket=name).get("Uploads")
            ) or process.poll() is not None:
                break
            time.sleep(0.05)
        assert running and process.poll() is None, "the backup was not caught mid-stream"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert Backup.objects.get(pk=running.pk).status == "running", "nobody is left to finish it"
    assert client.list_multipart_uploads(Bucket=name).get("Uploads"), "the upload was left open"

    from opsconsole.reconcile import reconcile

    killed_at = timezone.now()
    while reconcile()["expired"] == 0:
        assert timezone.now() - killed_at < timedelta(seconds=10), "the lease never ran out"
        time.sleep(0.2)
    reaped = Backup.objects.get(pk=running.pk)
    assert reaped.status == "failed" and "lease ran out" in reaped.error
    assert client.list_multipart_uploads(Bucket=name).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=name).get("KeyCount", 0) == 0
