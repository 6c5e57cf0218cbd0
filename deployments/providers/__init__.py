"""Deploy providers: one small class per kind, one registry."""

from __future__ import annotations

from deployments.providers.base import Provider, ProviderError
from deployments.providers.command import CommandProvider
from deployments.providers.local import LocalProvider
from deployments.providers.railway import RailwayProvider

PROVIDERS: dict[str, type[Provider]] = {
    cls.kind: cls for cls in (LocalProvider, RailwayProvider, CommandProvider)
}

__all__ = ["PROVIDERS", "Provider", "ProviderError"]
