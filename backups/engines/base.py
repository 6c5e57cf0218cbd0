"""What every database engine answers for itself: how to dump to a stream, what it can
restore, and how to check a restored copy. Nothing outside `backups/engines/` asks
which engine a target has."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, ClassVar

from backups.errors import EngineError
from opsconsole.fields import reveal


class Dump:
    """A dump being written by an engine: read `stream`; `stderr` is set once it ended."""

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.stderr = ""


class Engine:
    """One class per engine. A target's `db` property returns an instance.

    `restores_into_databases`: the console can restore a backup of this engine
    into a new database on the target's server (restores, drills, replace).
    """

    kind: ClassVar[str]
    label: ClassVar[str]
    schemes: ClassVar[tuple[str, ...]] = ()
    restores_into_databases: ClassVar[bool] = False
    # Continuous WAL and point-in-time recovery (a replication slot, base backups).
    streams_wal: ClassVar[bool] = False

    def __init__(self, target):
        self.target = target
        self.dsn: str = reveal(target.dsn)

    @classmethod
    def validate_dsn(cls, dsn: str) -> None:
        """Raise ValueError with a message a person understands."""

    def versions(self) -> tuple[str, str]:
        """(client tool version, server version), recorded on each backup."""
        return "", ""

    @contextlib.contextmanager
    def dump(self) -> Iterator[Dump]:
        """Stream a consistent dump of the database; raise BackupError when it fails."""
        raise EngineError(f"{self.label} targets cannot be backed up")
        yield  # pragma: no cover - a generator for contextmanager

    def describe_archive(self, archive: Path) -> dict[str, int]:
        """What a decrypted, decompressed dump holds (counts by kind); EngineError or
        RestoreRefused when it is not a readable archive of this engine."""
        return {}

    # --- restore side: only where `restores_into_databases` ----------------------------
    @property
    def dbname(self) -> str:
        raise EngineError(f"{self.label} targets have no database name")

    def database_exists(self, name: str) -> bool:
        raise EngineError(f"{self.label} targets cannot be restored by the console")

    def create_database(self, name: str) -> None:
        raise EngineError(f"{self.label} targets cannot be restored by the console")

    def drop_database(self, name: str) -> None:
        raise EngineError(f"{self.label} targets cannot be restored by the console")

    def restore_archive(self, archive: Path, dbname: str) -> None:
        raise EngineError(f"{self.label} targets cannot be restored by the console")

    def run_checks(self, dbname: str, required_tables: list[str], queries: list[str]) -> list[str]:
        raise EngineError(f"{self.label} targets cannot be checked by the console")

    def swap_in(self, fresh: str, keep_as: str) -> None:
        raise EngineError(f"{self.label} targets cannot be replaced by the console")
