"""Small named pieces that backing up, verifying and restoring compose.

The stream pieces pass bytes along in bounded chunks and count, hash or drain
something on the way, so memory stays flat whatever the size of the dump;
`watchdog` kills a child process that outlives its time, and `scratch_dir` is
the console's own folder for decrypted archives and snapshots.
"""

from __future__ import annotations

import collections
import hashlib
import subprocess
import threading
import time
from pathlib import Path
from typing import IO

from django.conf import settings

CHUNK = 1024 * 1024


def scratch_dir() -> str:
    """The console's own scratch folder (var/tmp): decrypted archives and snapshots."""
    path = Path(settings.VAR_DIR) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


class HashingWriter:
    def __init__(self, sink):
        self.sink, self.hash, self.count = sink, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.count += len(data)
        self.sink.write(data)
        return len(data)

    def flush(self) -> None:  # pyrage may call it
        pass


class HashingReader:
    """Hashes what passes through and counts the time spent waiting on the storage."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.hash, self.count = raw, hashlib.sha256(), 0
        self.read_seconds = 0.0

    def read(self, size: int = -1) -> bytes:
        started = time.monotonic()
        data = self.raw.read(CHUNK if size is None or size < 0 else size)
        self.read_seconds += time.monotonic() - started
        self.hash.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class StderrTail:
    """Drains a child's stderr on its own thread (a full pipe would stall the child)."""

    def __init__(self, stream: IO[bytes], lines: int = 40):
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream) -> None:
        for line in iter(stream.readline, b""):
            self.lines.append(line.decode(errors="replace").rstrip())

    def text(self) -> str:
        self.thread.join(timeout=5)
        return "\n".join(self.lines)


def watchdog(process: subprocess.Popen, seconds: float) -> threading.Timer:
    """Kill `process` after `seconds` (a child must never hang a worker)."""
    timer = threading.Timer(seconds, lambda: process.poll() is None and process.kill())
    timer.daemon = True
    timer.start()
    return timer
