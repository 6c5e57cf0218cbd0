"""Database engines: one class per engine in its own module, listed in one registry.

A target's `engine` choices are built from ENGINES, and nothing outside this
package asks which engine a target has: each answers for itself how it dumps
to a stream, what it can restore, and how a restored copy is checked. A new
engine is one module here with a subclass of `Engine`, named in ENGINES.
"""

from __future__ import annotations

from backups.engines.base import Dump, Engine
from backups.engines.postgresql import PostgresEngine, pg_tool
from backups.engines.sqlite import SqliteEngine
from backups.errors import EngineError

ENGINES: dict[str, type[Engine]] = {cls.kind: cls for cls in (PostgresEngine, SqliteEngine)}


def engine_for_dsn(dsn: str) -> str | None:
    """The kind of engine a connection URL names (by its scheme), or None."""
    scheme = dsn.split(":", 1)[0].lower()
    return next((kind for kind, cls in ENGINES.items() if scheme in cls.schemes), None)


__all__ = [
    "ENGINES",
    "Dump",
    "Engine",
    "EngineError",
    "PostgresEngine",
    "SqliteEngine",
    "engine_for_dsn",
    "pg_tool",
]
