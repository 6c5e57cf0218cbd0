"""What every storage answers for itself: writing an object whole or not at all, reading
it back, recording its checksum, and cleaning up what an interrupted write left."""

from __future__ import annotations

from typing import IO, Any, ClassVar

from backups.errors import StorageError
from opsconsole.fields import reveal


class Writer:
    """Streams one object in; `commit()` makes it visible whole, `abort()` leaves nothing."""

    def write(self, data: bytes) -> int:
        raise StorageError("not writable")

    def commit(self) -> None: ...

    def abort(self) -> None: ...


class Storage:
    kind: ClassVar[str]
    label: ClassVar[str]

    def __init__(self, location):
        self.location = location
        self.config: dict[str, Any] = location.config or {}
        self.secret: str = reveal(location.secret)

    @classmethod
    def validate(cls, config: dict[str, Any], secret: str) -> dict[str, Any]:
        """Check the configuration on save; raise ValueError with a message a person reads."""
        if not isinstance(config, dict):
            raise ValueError("The configuration must be a JSON object.")
        return config

    def open_writer(self, key: str, metadata: dict[str, str]) -> Writer:
        raise StorageError(f"{self.label} cannot store objects")

    def open_reader(self, key: str) -> IO[bytes]:
        raise StorageError(f"{self.label} cannot read objects")

    def delete(self, key: str) -> None:
        raise StorageError(f"{self.label} cannot delete objects")

    def exists(self, key: str) -> bool:
        raise StorageError(f"{self.label} cannot look objects up")

    def record_checksum(self, key: str, sha256: str) -> None:
        """Keep the SHA-256 of a committed object beside it (known only once it is written),
        so it can be checked by hand without the console."""

    def abort_partial(self, key: str) -> int:
        """Remove what an interrupted write of `key` left behind; returns how many pieces."""
        return 0
