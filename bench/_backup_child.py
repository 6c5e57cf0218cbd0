"""Run one console backup or restore in this process and report its own peak RSS and disk writes.

Used by backups_pipeline.py so the numbers belong to the process doing the work.
"""

import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def io_write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def peak_rss_mb() -> float:
    """VmHWM: this process's own peak since exec (ru_maxrss would include the parent's at fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    import django

    django.setup()
    from backups.backup import run_backup
    from backups.models import Backup, DatabaseTarget, StorageLocation
    from backups.restore import restore_into

    action, name = sys.argv[1], sys.argv[2]
    writes_before = io_write_bytes()
    cpu_before = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    started = time.perf_counter()
    if action == "backup":
        target = DatabaseTarget.objects.get(name=name)
        backup = run_backup(
            Backup.objects.create(
                target=target, storage=StorageLocation.objects.get(name=sys.argv[3])
            )
        )
        result = {
            "status": backup.status,
            "id": backup.id,
            "bytes_read": backup.bytes_read,
            "bytes_stored": backup.bytes_stored,
            "error": backup.error,
        }
    else:
        backup = Backup.objects.get(pk=name)
        result = restore_into(backup, sys.argv[3])
    result.update(
        seconds=time.perf_counter() - started,
        peak_rss_mb=peak_rss_mb(),
        disk_written_mb=(io_write_bytes() - writes_before) / 2**20,
        # This process's own CPU (the pipeline, the tracing), not pg_dump's.
        cpu_seconds=sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu_before,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsconsole.settings")
    main()
