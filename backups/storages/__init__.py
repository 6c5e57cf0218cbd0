"""Where backup objects live: one class per kind in its own module, one registry.

A writer streams an object in and either commits it whole or leaves nothing:
local storage writes a temporary name and renames it; S3 uses a multipart
upload that is completed on commit and aborted otherwise. Each storage also
records an object's checksum and cleans up after an interrupted write, so
nothing outside this package asks which kind a location is.
"""

from __future__ import annotations

from backups.errors import StorageError
from backups.storages.base import Storage, Writer
from backups.storages.local import LocalStorage
from backups.storages.s3 import PART_SIZE, S3Storage

STORAGE_KINDS: dict[str, type[Storage]] = {cls.kind: cls for cls in (LocalStorage, S3Storage)}

__all__ = [
    "PART_SIZE",
    "STORAGE_KINDS",
    "LocalStorage",
    "S3Storage",
    "Storage",
    "StorageError",
    "Writer",
]
