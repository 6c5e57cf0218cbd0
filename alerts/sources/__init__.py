"""Pull sources for metrics: one class per kind, one registry."""

from __future__ import annotations

from alerts.sources.base import Source
from alerts.sources.http_json import HttpJsonSource
from alerts.sources.prometheus import PrometheusSource
from alerts.sources.sql import SqlSource

SOURCE_KINDS: dict[str, type[Source]] = {
    cls.kind: cls for cls in (PrometheusSource, HttpJsonSource, SqlSource)
}


def source_class(kind: str) -> type[Source]:
    try:
        return SOURCE_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown source kind {kind!r}") from None
