"""The command line and the admin buttons, as operators and scripts use them."""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from backups.models import Backup, BackupKey, RestoreRequest
from tests.conftest import login

pytestmark = pytest.mark.postgres


def run(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def queued() -> list[tuple[str, tuple]]:
    return [
        (p["func"], p["args"]) for p in (SignedPackage.loads(q.payload) for q in OrmQ.objects.all())
    ]


def test_backup_by_dsn_prints_json_then_restore_verify_and_list(db, pg, source_db, local_storage):
    data = json.loads(run("backup", "--dsn", source_db, "--storage", local_storage.name, "--json"))
    assert data["status"] == "verified" and data["storage"] == local_storage.name, (
        "read back after it was made"
    )
    assert data["toc_summary"]["TABLE"] == 4
    assert data["bytes_stored"] > 0 and len(data["sha256"]) == 64
    assert "verified" in run("verify_backup", data["id"])
    restored = json.loads(run("restore", data["id"], "--into", "cli_restored", "--json"))
    pg._databases.append("cli_restored")
    assert restored["database"] == "cli_restored"
    assert data["id"] in run("list_backups")
    again = json.loads(run("backup", "--dsn", source_db, "--storage", local_storage.name, "--json"))
    assert again["target"] == data["target"], "the DSN's target is reused"


def test_commands_fail_in_one_line_on_bad_input(db, pg):
    with pytest.raises(CommandError, match="no target named 'nope'"):
        run("backup", "nope")
    with pytest.raises(CommandError, match="name a target or give --dsn"):
        run("backup")
    with pytest.raises(CommandError, match="no backup 'backup-x'"):
        run("restore", "backup-x", "--into", "y")
    with pytest.raises(CommandError, match="backup failed: pg_dump exited"):
        run("backup", "--dsn", pg.dsn("does_not_exist"))


def test_restore_command_refuses_an_existing_database(db, pg, source_db, local_storage):
    data = json.loads(run("backup", "--dsn", source_db, "--storage", local_storage.name, "--json"))
    existing = source_db.rsplit("/", 1)[1]
    with pytest.raises(CommandError, match="exists already"):
        run("restore", data["id"], "--into", existing)


def test_export_backup_identity_prints_the_key_once_asked(db):
    out = run("export_backup_identity")
    key = BackupKey.objects.get()
    assert out.strip() == key.identity and out.startswith("AGE-SECRET-KEY-1")
    assert key.exported_at is not None


def test_back_up_now_queues_a_backup_for_an_operator(
    client, alice, target, django_capture_on_commit_callbacks
):
    login(client, alice)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(
            "/admin/backups/databasetarget/",
            {"action": "back_up_now", "_selected_action": [target.pk]},
        )
    backup = Backup.objects.get()
    assert (backup.status, backup.requested_by) == ("queued", alice)
    assert queued() == [("backups.tasks.run_backup", (backup.pk,))]


def test_viewer_has_no_back_up_now(client, carol, target):
    login(client, carol)
    page = client.get("/admin/backups/databasetarget/")
    assert page.status_code == 200 and b"back_up_now" not in page.content
    client.post(
        "/admin/backups/databasetarget/", {"action": "back_up_now", "_selected_action": [target.pk]}
    )
    assert not Backup.objects.exists()


def test_request_restore_then_bob_approves_and_it_is_queued(
    client, alice, bob, target, local_storage, django_capture_on_commit_callbacks
):
    from backups.backup import run_backup

    backup = run_backup(Backup.objects.create(target=target, storage=local_storage))
    login(client, alice)
    response = client.post(
        "/admin/backups/backup/", {"action": "request_restore", "_selected_action": [backup.pk]}
    )
    restore = RestoreRequest.objects.get()
    assert response["Location"] == f"/admin/backups/restorerequest/{restore.pk}/change/"
    assert (
        b"Approve" not in client.get(response["Location"]).content.split(b"object-tools")[1][:2000]
    )
    login(client, bob)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/admin/backups/restorerequest/{restore.pk}/approve/",
                               {"confirmation": restore.backup.target.name})  # fmt: skip
    assert response.status_code == 302
    restore.refresh_from_db()
    assert (restore.status, restore.decided_by) == ("approved", bob)
    assert (
        "opsconsole.approvals.tasks.execute",
        ("backups.RestoreRequest", restore.pk),
    ) in queued()


def test_the_admin_never_shows_the_dsn_password_or_the_identity(admin_client, db, pg):
    from backups.models import DatabaseTarget

    target = DatabaseTarget.objects.create(name="pw", engine="postgresql",
                                           dsn="postgresql://u:hunter2-secret@db.internal/app")  # fmt: skip
    page = admin_client.get(f"/admin/backups/databasetarget/{target.pk}/change/").content.decode()
    assert "hunter2-secret" not in page
    key = BackupKey.current()
    page = admin_client.get(f"/admin/backups/backupkey/{key.pk}/change/").content.decode()
    assert key.recipient in page and key.identity.reveal() not in page
