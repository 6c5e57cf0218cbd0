"""Health-check kinds: one small class each, one registry. Each run is bounded by its timeout."""

from __future__ import annotations

import time
from typing import Any, ClassVar
from urllib.parse import urlsplit

import psycopg

from alerts.sources.base import describe
from opsconsole import http, outbound
from opsconsole.fields import reveal


class CheckFailed(Exception):
    pass


class Kind:
    kind: ClassVar[str]
    label: ClassVar[str]

    def __init__(self, check):
        self.check = check
        self.config: dict[str, Any] = check.config or {}
        self.secret: str = reveal(check.secret)
        self.timeout: float = float(check.timeout_seconds)

    @classmethod
    def validate(cls, config: dict[str, Any], secret: str) -> dict[str, Any]:
        if not isinstance(config, dict):
            raise ValueError("The configuration must be a JSON object.")
        return config

    @classmethod
    def configured(cls, config: dict[str, Any], secret: str) -> bool:
        """False while the check has nothing to look at yet (shipped defaults wait disabled)."""
        return True

    def run(self) -> str:
        """Raise CheckFailed with a reason, or return a short note."""
        raise CheckFailed("not implemented")


def _dig(document: Any, path: str) -> Any:
    current = document
    for part in [p for p in path.split(".") if p]:
        if isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        elif isinstance(current, dict) and part in current:
            current = current[part]
        else:
            raise CheckFailed(f"no {path!r} in the response")
    return current


class HttpKind(Kind):
    kind = "http"
    label = "HTTP"

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        url = config.get("url") or ""
        if url and urlsplit(url).scheme not in ("http", "https"):
            raise ValueError("'url' must be an http(s) address.")
        status = config.get("expected_status", 200)
        if not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError("expected_status must be an HTTP status code.")
        return config

    @classmethod
    def configured(cls, config, secret):
        return bool(config.get("url"))

    def run(self) -> str:
        try:
            response = http.request(
                "GET",
                self.config["url"],
                timeout=self.timeout,
                raise_for_status=False,
                headers={"Authorization": self.secret} if self.secret else None,
                secrets=[self.secret],
            )
        except http.HttpError as exc:
            raise CheckFailed(exc.message) from None
        self.check.certificate_expires_at = response.extensions.get(http.CERTIFICATE_EXPIRES)
        expected = self.config.get("expected_status", 200)
        if response.status_code != expected:
            raise CheckFailed(f"HTTP {response.status_code}, expected {expected}")
        keyword = self.config.get("keyword")
        if keyword and keyword not in response.text:
            raise CheckFailed(f"{keyword!r} not in the response")
        path = self.config.get("json_path")
        if path:
            try:
                value = _dig(response.json(), path)
            except ValueError:
                raise CheckFailed("the response is not JSON") from None
            wanted = self.config.get("json_value")
            # Say what kind of value it was, never the value: a check must not read an
            # internal service's answers back to whoever configured it.
            if wanted is not None and value != wanted:
                raise CheckFailed(f"{path} is not the expected value (it is {describe(value)})")
            if wanted is None and not value:
                raise CheckFailed(f"{path} is empty or false (it is {describe(value)})")
        return f"HTTP {response.status_code}"


class TcpKind(Kind):
    kind = "tcp"
    label = "TCP"

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        if config.get("port") is not None and not (
            isinstance(config["port"], int) and 0 < config["port"] < 65536
        ):
            raise ValueError("'port' must be a port number.")
        return config

    @classmethod
    def configured(cls, config, secret):
        return bool(config.get("host") and config.get("port"))

    def run(self) -> str:
        try:
            with outbound.connect(self.config["host"], self.config["port"], self.timeout):
                return "connected"
        except outbound.OutboundRefused as exc:
            raise CheckFailed(f"refused: {exc}") from None
        except OSError as exc:
            raise CheckFailed(f"cannot connect: {exc.strerror or exc}") from None


REPLICATION_LAG = "SELECT COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)"


class PostgresKind(Kind):
    """Connect and SELECT 1; on a standby, also the replication lag (max_lag_seconds)."""

    kind = "postgres"
    label = "PostgreSQL"

    @classmethod
    def configured(cls, config, secret):
        return bool(secret)

    def run(self) -> str:
        try:
            params = outbound.pinned_conninfo(
                self.secret, connect_timeout=max(1, int(self.timeout))
            )
        except outbound.OutboundRefused as exc:
            raise CheckFailed(f"refused: {exc}") from None
        try:
            with psycopg.connect(**params) as conn:
                conn.execute(f"SET statement_timeout = {int(self.timeout * 1000)}")
                conn.execute("SELECT 1").fetchone()
                standby = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                if not standby:
                    return "primary"
                lag = conn.execute(REPLICATION_LAG).fetchone()[0]
        except psycopg.Error as exc:
            raise CheckFailed(str(exc).strip().splitlines()[0]) from None
        limit = self.config.get("max_lag_seconds")
        if limit is not None and float(lag) > float(limit):
            raise CheckFailed(f"standby {float(lag):.0f} s behind (limit {limit} s)")
        return f"standby, {float(lag):.1f} s behind"


class RedisKind(Kind):
    kind = "redis"
    label = "Redis"

    @classmethod
    def configured(cls, config, secret):
        return bool(secret)

    def run(self) -> str:
        import redis  # here: redis-py costs every process ~7 MB that checks no Redis

        try:
            url = outbound.checked_redis_url(self.secret)
        except outbound.OutboundRefused as exc:
            raise CheckFailed(f"refused: {exc}") from None
        client = redis.Redis.from_url(
            url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
        )
        try:
            if not client.ping():
                raise CheckFailed("PING was not answered")
        except redis.RedisError as exc:
            # The kind of failure only: redis-py quotes what the peer answered.
            raise CheckFailed(f"{type(exc).__name__}") from None
        finally:
            client.close()
        return "PONG"


CHECK_KINDS: dict[str, type[Kind]] = {
    cls.kind: cls for cls in (HttpKind, TcpKind, PostgresKind, RedisKind)
}


def timed(kind: Kind) -> tuple[bool, float, str]:
    started = time.monotonic()
    try:
        note = kind.run()
        return True, (time.monotonic() - started) * 1000, note
    except CheckFailed as exc:
        return False, (time.monotonic() - started) * 1000, str(exc)
    except Exception as exc:  # a bug in a check must not stop the others
        return False, (time.monotonic() - started) * 1000, f"{type(exc).__name__}: {exc}"
