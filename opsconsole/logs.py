"""Structured logging: JSON lines, a correlation id per request or task, redaction.

Named `logs` so it never shadows the standard library's `logging`.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import uuid
from typing import Any

from django.conf import settings

REDACTED = "[redacted]"

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

# A key is sensitive when its name contains one of these (any case, any nesting depth).
SENSITIVE_KEY = re.compile(
    r"pass(word|wd)?|token|secret|api[_-]?key|authorization|cookie|dsn", re.I
)
# scheme://user:password@host -> scheme://user:[redacted]@host
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I
)
# token=abc in a query string or free text
_KEY_VALUE = re.compile(
    r"(?P<key>\b[\w\-]*(?:pass(?:word|wd)?|token|secret|api[_-]?key|authorization|dsn)[\w\-]*)"
    r"(?P<sep>=|:\s*)(?P<value>[^\s&,;\"']+)",
    re.I,
)


def get_correlation_id() -> str | None:
    return _correlation_id.get()


def set_correlation_id(value: str | None) -> contextvars.Token:
    return _correlation_id.set(value)


def reset_correlation_id(token: contextvars.Token) -> None:
    _correlation_id.reset(token)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def redact_text(text: str) -> str:
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    return _KEY_VALUE.sub(lambda m: f"{m['key']}{m['sep']}{REDACTED}", text)


def redact(value: Any) -> Any:
    """A copy of `value` with sensitive keys and URL credentials replaced, at any depth."""
    if isinstance(value, dict):
        return {
            k: REDACTED if isinstance(k, str) and SENSITIVE_KEY.search(k) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, tuple):
        return tuple(redact(v) for v in value)
    if isinstance(value, list | set | frozenset):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "correlation_id",
    "environment",
    "taskName",
}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v
        for k, v in record.__dict__.items()
        if k not in _STANDARD_ATTRS and not k.startswith("_")
    }


class ContextFilter(logging.Filter):
    """Adds the environment name and the current correlation id to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "correlation_id", None):
            record.correlation_id = get_correlation_id()
        record.environment = getattr(settings, "OPSCONSOLE_ENV", None)
        return True


class RedactingFilter(logging.Filter):
    """Scrubs the message, its arguments and every extra field before any handler sees them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            # Format first: a secret can be split between the template and its arguments.
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        else:
            record.msg = redact(record.msg)
        for key, value in extra_fields(record).items():
            setattr(record, key, REDACTED if SENSITIVE_KEY.search(key) else redact(value))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "timestamp": dt.datetime.fromtimestamp(record.created, tz=dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "environment": getattr(record, "environment", None),
            "correlation_id": getattr(record, "correlation_id", None),
        }
        data.update(extra_fields(record))
        if record.exc_info:
            data["exception"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal: time level logger: message [correlation id] key=value."""

    def format(self, record: logging.LogRecord) -> str:
        when = dt.datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        cid = getattr(record, "correlation_id", None)
        line = f"{when} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if cid:
            line += f" [{cid[:8]}]"
        extras = extra_fields(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        if record.exc_info:
            line += "\n" + redact_text(self.formatException(record.exc_info))
        return line
