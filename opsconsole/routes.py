"""URL includes that apps plug in from `AppConfig.ready()`, by dotted module path,
so the project package never imports an app."""

from __future__ import annotations

_includes: list[tuple[str, str]] = []


def register(prefix: str, module: str) -> None:
    if (prefix, module) not in _includes:
        _includes.append((prefix, module))


def includes() -> list[tuple[str, str]]:
    return list(_includes)
