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
    if isinstance(value, bool) or value is None:
        raise SourceError(f"{where}: {value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SourceError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise SourceError(f"{where}: {value!r} is not a finite number")
    return number
