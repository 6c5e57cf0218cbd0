"""What every channel shares: the message it is given and how it fails."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from opsconsole.fields import reveal


class TransportError(Exception):
    """A failed delivery. `permanent`: retrying cannot help; the channel gets flagged."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        http_status: int | None = None,
        provider_code: str = "",
        retry_after: float | None = None,
        timed_out: bool = False,
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.http_status = http_status
        self.provider_code = provider_code
        self.retry_after = retry_after
        self.timed_out = timed_out

    @classmethod
    def from_http(cls, exc) -> TransportError:
        """From opsconsole.http.HttpError, keeping its classification."""
        return cls(
            exc.message,
            permanent=exc.permanent,
            http_status=exc.status,
            retry_after=exc.retry_after,
            timed_out="timed out" in exc.message,
        )


@dataclass(frozen=True)
class Message:
    """One incident event, in the words every channel renders its own way."""

    event: str  # firing, repeat, acknowledged, resolved, announce, test
    title: str
    priority: str
    component: str
    details: dict[str, Any]
    at: datetime
    fingerprint: str
    incident_id: int | None = None
    ack_url: str = ""
    incident_url: str = ""
    level: int = 0
    delivery_key: str = ""  # the same on every send of one notification
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headline(self) -> str:
        prefix = {
            "firing": "FIRING",
            "repeat": "STILL FIRING",
            "acknowledged": "ACKNOWLEDGED",
            "resolved": "RESOLVED",
            "test": "TEST",
            "announce": "INFO",
        }.get(self.event, self.event.upper())
        return f"[{prefix}] [{self.priority.upper()}] {self.title}"

    def text(self) -> str:
        lines = [self.headline]
        if self.component:
            lines.append(f"Component: {self.component}")
        for key, value in self.details.items():
            if key not in ("labels", "rule_id") and value not in (None, "", {}):
                lines.append(f"{key.replace('_', ' ').capitalize()}: {value}")
        lines.append(f"Time: {self.at:%Y-%m-%d %H:%M:%S %Z}")
        if self.ack_url and self.event in ("firing", "repeat"):
            lines.append(f"Acknowledge: {self.ack_url}")
        elif self.incident_url:
            lines.append(f"Incident: {self.incident_url}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Delivery:
    """What the peer said: evidence kept on the Notification row."""

    http_status: int | None = None
    provider_code: str = ""
    detail: str = ""


class Transport:
    kind: ClassVar[str]
    label: ClassVar[str]
    default_priorities: ClassVar[tuple[str, ...]] = ("critical", "high", "medium", "low")
    credential_hint: ClassVar[str] = ""
    # Delivered inside the console (a log line, a database row): nothing to wait on, so it
    # is sent in the worker itself, not on a thread that may outlive a slow peer.
    local: ClassVar[bool] = False

    def __init__(self, channel):
        self.channel = channel
        self.config: dict[str, Any] = channel.config or {}
        self.secret: str = reveal(channel.secret)

    @classmethod
    def validate(cls, config: dict[str, Any], secret: str) -> dict[str, Any]:
        """Return the cleaned config or raise ValueError with a message a person understands."""
        if not isinstance(config, dict):
            raise ValueError("The configuration must be a JSON object.")
        return config

    def send(self, message: Message) -> Delivery:
        raise TransportError(f"{self.label} cannot send", permanent=True)


def require_keys(config: dict[str, Any], *keys: str) -> None:
    missing = [k for k in keys if not config.get(k)]
    if missing:
        raise ValueError(f"Missing configuration: {', '.join(missing)}.")


def string_list(config: dict[str, Any], key: str) -> list[str]:
    value = config.get(key)
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key!r} must be a list of one or more strings.")
    return value
