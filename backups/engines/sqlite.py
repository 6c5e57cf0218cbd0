"""SQLite: a consistent snapshot through its online backup API (readers and writers go on).

The console backs SQLite databases up and verifies them; restoring one is
copying the decrypted file back by hand (see the README).
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from backups.engines.base import Dump, Engine
from backups.streams import scratch_dir


class SqliteEngine(Engine):
    """SQLite through its online backup API (consistent while others write)."""

    kind = "sqlite"
    label = "SQLite"
    schemes = ("sqlite",)

    @classmethod
    def validate_dsn(cls, dsn: str) -> None:
        if not dsn.startswith("sqlite:///"):
            raise ValueError("SQLite targets are written sqlite:////absolute/path.db")

    @property
    def path(self) -> str:
        return self.dsn.removeprefix("sqlite:///")

    def snapshot(self, into: Path) -> None:
        source = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            destination = sqlite3.connect(into)
            with destination:
                source.backup(destination, pages=1024)
            destination.close()
        finally:
            source.close()

    @contextlib.contextmanager
    def dump(self) -> Iterator[Dump]:
        """A snapshot file in the console's scratch folder, read back as the dump."""
        with tempfile.TemporaryDirectory(prefix="opsconsole-sqlite-", dir=scratch_dir()) as tmp:
            snapshot = Path(tmp) / "snapshot.sqlite3"
            self.snapshot(snapshot)
            with open(snapshot, "rb") as raw:
                yield Dump(raw)

    def versions(self) -> tuple[str, str]:
        return f"sqlite {sqlite3.sqlite_version}", f"sqlite {sqlite3.sqlite_version}"
