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
from opentelemetry import trace

REDACTED = "[redacted]"

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "correlation_id", default=None
)

# A key is sensitive when its name contains one of these (any case, any nesting depth).
SENSITIVE_KEY = re.compile(
    r"pass(word|wd)?|token|secret|api[_-]?key|authorization|cookie|dsn", re.I
)
# Redaction runs on every log line, including an anonymous request's path, so it must
# stay linear on any input: no pattern here starts with an unbounded repetition that
# the regex engine would retry from every position (quadratic on "a-a-a-…"). Text is
# also bounded before it is scanned.
MAX_REDACTED_LENGTH = 16 * 1024
_SENSITIVE_WORD = re.compile(r"pass(?:word|wd)?|token|secret|api[_-]?key|authorization|dsn", re.I)
_KEY_CHARS = re.compile(r"[\w\-]+")
_SEPARATOR_AND_VALUE = re.compile(r"(=|:[ \t]*)([^\s&,;\"']+)")
# After "://": user, ":", password, "@". The user cannot hold ":" and the password
# cannot hold "/", so each attempt ends before the next "://" (linear overall).
_USER_PASSWORD = re.compile(r"([^:/@\s]*):([^@/\s]+)@")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")


def _redact_url_credentials(text: str) -> str:
    """scheme://user:password@host -> scheme://user:[redacted]@host"""
    out, done, at = [], 0, text.find("://")
    while at != -1:
        start = at
        while start > done and text[start - 1] in _SCHEME_CHARS:
            start -= 1
        match = _USER_PASSWORD.match(text, at + 3)
        if start < at and text[start].isalpha() and match:
            out.append(text[done : match.start(2)])
            out.append(REDACTED)
            done = match.end(2)
            at = text.find("://", match.end())
        else:
            at = text.find("://", at + 3)
    out.append(text[done:])
    return "".join(out)


def _redact_key_values(text: str) -> str:
    """token=abc, password: abc, X-Api-Key=abc -> the value redacted."""
    out, done = [], 0
    for word in _KEY_CHARS.finditer(text):
        if word.start() < done or not _SENSITIVE_WORD.search(word.group()):
            continue
        value = _SEPARATOR_AND_VALUE.match(text, word.end())
        if value:
            out.append(text[done : value.start(2)])
            out.append(REDACTED)
            done = value.end(2)
    out.append(text[done:])
    return "".join(out)


def current_trace_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current OpenTelemetry span when it is sampled, or
    None: outside one, in a trace that will never be exported, and always when tracing
    is off (the API's no-op span is never valid)."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return trace.format_trace_id(ctx.trace_id), trace.format_span_id(ctx.span_id)


def get_correlation_id() -> str | None:
    return _correlation_id.get()


def set_correlation_id(value: str | None) -> contextvars.Token:
    return _correlation_id.set(value)


def reset_correlation_id(token: contextvars.Token) -> None:
    _correlation_id.reset(token)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def redact_text(text: str) -> str:
    """`text` with URL credentials and key=value secrets replaced, in linear time; at most
    MAX_REDACTED_LENGTH characters of it are kept."""
    if len(text) <= MAX_REDACTED_LENGTH:
        return _redact_key_values(_redact_url_credentials(text))
    # Redact a little more than is kept, then cut: a secret that crosses the cut is
    # redacted whole before it is cut, never shown in part.
    window = text[: MAX_REDACTED_LENGTH + 4096]
    kept = _redact_key_values(_redact_url_credentials(window))[:MAX_REDACTED_LENGTH]
    return f"{kept}… [{len(text) - len(kept)} more characters]"


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
    "trace_id",
    "span_id",
}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v
        for k, v in record.__dict__.items()
        if k not in _STANDARD_ATTRS and not k.startswith("_")
    }


class ContextFilter(logging.Filter):
    """Adds the environment name, the current correlation id and, inside a traced span,
    its trace and span ids to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "correlation_id", None):
            record.correlation_id = get_correlation_id()
        record.environment = getattr(settings, "OPSCONSOLE_ENV", None)
        if not getattr(record, "trace_id", None) and (ids := current_trace_ids()):
            record.trace_id, record.span_id = ids
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
        if trace_id := getattr(record, "trace_id", None):
            data["trace_id"], data["span_id"] = trace_id, getattr(record, "span_id", None)
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
