"""A folder on this machine (the embedded default: var/backups).

An object is written under a temporary ".partial" name and renamed into place
on commit; its checksum sits beside it as "<name>.sha256", in the format
`sha256sum -c` reads.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from backups.errors import StorageError
from backups.storages.base import Storage, Writer


class _LocalWriter(Writer):
    def __init__(self, final: Path):
        self.final = final
        self.partial = final.with_name(final.name + ".partial")
        final.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.file = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> int:
        return self.file.write(data)

    def commit(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self.partial, self.final)

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        self.partial.unlink(missing_ok=True)


class LocalStorage(Storage):
    """A folder on this machine (the embedded default: var/backups)."""

    kind = "local"
    label = "Local folder"

    @property
    def root(self) -> Path:
        return Path(self.config.get("path") or settings.VAR_DIR / "backups")

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StorageError(f"key {key!r} escapes the storage folder")
        return path

    def open_writer(self, key, metadata) -> Writer:
        return _LocalWriter(self._path(key))

    def open_reader(self, key):
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise StorageError(f"no object {key!r} in {self.root}") from None

    def delete(self, key) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)

    def exists(self, key) -> bool:
        return self._path(key).exists()

    def record_checksum(self, key: str, sha256: str) -> None:
        path = self._path(key)
        path.with_name(path.name + ".sha256").write_text(f"{sha256}  {path.name}\n")

    def abort_partial(self, key: str) -> int:
        path = self._path(key)
        partial = path.with_name(path.name + ".partial")
        if not partial.exists():
            return 0
        partial.unlink(missing_ok=True)
        return 1
