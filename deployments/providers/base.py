from __future__ import annotations

from typing import Any, ClassVar

from opsconsole.fields import reveal


class ProviderError(Exception):
    """The provider refused or failed; the message goes on the record."""

    def __init__(self, message: str, response: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.response = response or {}


class Provider:
    kind: ClassVar[str]
    label: ClassVar[str]
    # Traffic weights make a gradual rollback possible: begin_gradual, set_share,
    # complete, abort. Providers without them do not offer it at all.
    supports_weights: ClassVar[bool] = False

    def __init__(self, environment):
        self.environment = environment
        self.config: dict[str, Any] = environment.provider_config or {}
        self.secret: str = reveal(environment.provider_secret)

    @classmethod
    def validate(cls, config: dict[str, Any], secret: str) -> dict[str, Any]:
        if not isinstance(config, dict):
            raise ValueError("The configuration must be a JSON object.")
        return config

    def deploy(self, version: str) -> dict[str, Any]:
        """Put `version` live. Most providers are deployed by the pipeline, not the console."""
        raise ProviderError(f"{self.label} deploys from your pipeline, not from the console")

    def rollback(self, target) -> dict[str, Any]:
        """Make `target` (a Deployment) live again; return the provider's response."""
        raise ProviderError(f"{self.label} cannot roll back")

    def live_version(self) -> str | None:
        """The version serving now, when the provider can tell."""
        return None

    def variables(self) -> dict[str, str] | None:
        """The variables set on the provider (for comparing; never displayed), or None."""
        return None

    def variable_names(self) -> set[str] | None:
        """Names of the variables set on the provider, or None when it cannot tell."""
        found = self.variables()
        return None if found is None else set(found)

    def set_variables(self, values: dict[str, str]) -> None:
        raise ProviderError(f"{self.label} cannot set variables")
