from __future__ import annotations

import math
from typing import Any, ClassVar
from urllib.parse import urlsplit

from opsconsole.fields import reveal

Reading = tuple[float, dict[str, str]]  # value, extra labels


class SourceError(Exception):
    pass


class Source:
    kind: ClassVar[str]
    label: ClassVar[str]

    def __init__(self, source):
        self.source = source
        self.config: dict[str, Any] = source.config or {}
        self.secret: str = reveal(source.secret)

    @classmethod
    def validate(cls, config: dict[str, Any], secret: str) -> dict[str, Any]:
        if not isinstance(config, dict):
            raise ValueError("The configuration must be a JSON object.")
        return config

    def pull(self) -> list[Reading]:
        raise SourceError(f"{self.label} cannot pull")


def require_url(config: dict[str, Any], key: str = "url") -> str:
    url = config.get(key) or ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"Set {key!r} to an http(s) address.")
    return url


def as_number(value: Any, where: str) -> float:
    """The value as a number; the error says what kind of value it was, never the value
    (a source pointed at an internal service must not read its answers back)."""
    if isinstance(value, bool) or value is None:
        raise SourceError(f"{where}: the value is {describe(value)}, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SourceError(f"{where}: the value is {describe(value)}, not a number") from None
    if not math.isfinite(number):
        raise SourceError(f"{where}: the value is not a finite number")
    return number


def describe(value: Any) -> str:
    """A value's kind and size, nothing of its content."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    if isinstance(value, list | dict):
        return f"a {'list' if isinstance(value, list) else 'object'} of {len(value)} items"
    return f"a {type(value).__name__}"


# Labels from a source are bounded: a series cannot carry a document into the console.
MAX_LABELS = 10
MAX_LABEL_LENGTH = 200


def bounded_labels(labels: dict[str, Any]) -> dict[str, str]:
    return {str(k)[:100]: str(v)[:MAX_LABEL_LENGTH] for k, v in sorted(labels.items())[:MAX_LABELS]}
