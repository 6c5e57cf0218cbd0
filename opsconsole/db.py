"""Database helpers shared by every app."""

from __future__ import annotations

import logging
import time

from django.conf import settings

slow_log = logging.getLogger("opsconsole.db.slow")


class SlowQueryLogger:
    """An execute wrapper that logs queries slower than OPSCONSOLE_SLOW_QUERY_MS as warnings."""

    def __call__(self, execute, sql, params, many, context):
        started = time.monotonic()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed_ms = (time.monotonic() - started) * 1000
            if elapsed_ms >= settings.SLOW_QUERY_MS:
                # The statement, never its parameters: those may hold secrets.
                slow_log.warning(
                    "slow query: %.0f ms",
                    elapsed_ms,
                    extra={
                        "duration_ms": round(elapsed_ms, 1),
                        "sql": sql[:2000],
                        "database": context["connection"].alias,
                    },
                )


def install_slow_query_logger(sender, connection, **kwargs) -> None:
    """connection_created receiver: one wrapper per connection."""
    if not any(isinstance(w, SlowQueryLogger) for w in connection.execute_wrappers):
        connection.execute_wrappers.append(SlowQueryLogger())
