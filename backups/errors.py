"""What goes wrong in a backup or a restore, as the records say it."""

from __future__ import annotations


class BackupError(Exception):
    """A backup or restore step failed; `message` goes on the record, `stderr` beside it."""

    def __init__(self, message: str, stderr: str = ""):
        super().__init__(message)
        self.message = message
        self.stderr = stderr


class RestoreRefused(Exception):
    """The backup failed a check; no database was touched."""


class EngineError(Exception):
    """The engine cannot do this (a missing tool, an operation it does not offer)."""


class StorageError(Exception):
    """The storage refused or failed; the message names the object, never a credential."""
