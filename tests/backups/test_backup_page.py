"""The backup page: where it stands and what it holds, its timeline, what is related, and the
actions each role may take."""

import re

from backups.models import Backup, DatabaseTarget, RestoreRequest, StorageLocation
from tests.conftest import login


def verified_backup(tmp_path):
    target = DatabaseTarget.objects.create(name="shop", engine="sqlite", dsn="sqlite:///x.db")
    store = StorageLocation.objects.create(
        name="here", kind="local", config={"path": str(tmp_path)}
    )
    from django.utils import timezone

    now = timezone.now()
    return Backup.objects.create(
        target=target, storage=store, status="verified", bytes_read=4_000_000,
        bytes_stored=1_000_000, duration_seconds=2.5, sha256="ab" * 32, created_at=now,
        started_at=now, finished_at=now, verified_at=now, toc_summary={"TABLE": 9, "INDEX": 12},
    )  # fmt: skip


def test_the_page_says_it_in_words_with_the_restore_action_first(client, alice, tmp_path):
    backup = verified_backup(tmp_path)
    RestoreRequest.objects.create(backup=backup, requested_by=alice, new_database="shop_copy")
    body = login(client, alice).get(f"/admin/backups/backup/{backup.pk}/change/").content.decode()
    assert f'/admin/backups/restorerequest/add/?backup={backup.pk}"' in body
    assert "Verify now" in body
    facts = body.split('class="facts"')[1].split("</table>")[0]
    assert (
        "Verified" in facts and "3.8\xa0MB dumped, 976.6\xa0KB stored, 4.0 times smaller" in facts
    )
    assert (
        "Manual, by hand" in facts
        and "12 index, 9 table" in facts
        and "2.5 s" in facts
        and "ab" * 32 in facts
    )
    timeline = body.split('id="timeline"')[1].split("</section>")[0]
    steps = re.findall(r"<strong>([^<]+)</strong>", timeline)
    assert steps == ["Queued", "Started", "Finished", "Verified", "Restore requested"]
    related = body.split('id="related"')[1].split("</section>")[0]
    assert f"/admin/backups/databasetarget/{backup.target.pk}/change/" in related
    assert "/admin/backups/restorerequest/" in related
    assert body.index('class="facts"') < body.index('id="timeline"') < body.index('id="related"')


def test_a_viewer_reads_it_and_has_no_action(client, carol, tmp_path):
    backup = verified_backup(tmp_path)
    body = login(client, carol).get(f"/admin/backups/backup/{backup.pk}/change/").content.decode()
    assert "Restore this backup" not in body and "Verify now" not in body
    assert "read back and checked" in body
