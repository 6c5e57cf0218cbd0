"""Failover action kinds: one small class each, one registry. Each returns what it did."""

from __future__ import annotations

import subprocess
import time
from typing import Any, ClassVar

import psycopg

from deployments.models import Environment
from deployments.providers import ProviderError
from opsconsole import children, http, outbound
from opsconsole.fields import reveal


class FailoverError(Exception):
    pass


class ActionKind:
    kind: ClassVar[str]
    label: ClassVar[str]

    def __init__(self, action):
        self.action = action
        self.config: dict[str, Any] = action.config or {}
        self.secret: str = reveal(action.secret)

    @classmethod
    def validate(cls, config: dict[str, Any], secret: str) -> dict[str, Any]:
        if not isinstance(config, dict):
            raise ValueError("The configuration must be a JSON object.")
        return config

    def run(self) -> dict[str, Any]:
        raise FailoverError("not implemented")


class WebhookAction(ActionKind):
    """POST JSON to a load balancer's or DNS provider's API."""

    kind = "webhook"
    label = "Webhook"

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        if not str(config.get("url", "")).startswith(("http://", "https://")):
            raise ValueError("Set 'url' to the http(s) address to call.")
        return config

    def run(self):
        headers = {"Authorization": self.secret} if self.secret else {}
        try:
            response = http.request(
                "POST",
                self.config["url"],
                json=self.config.get("body", {}),
                headers=headers,
                secrets=[self.secret],
            )
        except http.HttpError as exc:
            raise FailoverError(exc.message) from None
        # The status and the size only: the answer of whatever the URL names is not shown.
        return {"status": response.status_code, "answer": http.describe_body(response)}


class CommandAction(ActionKind):
    kind = "command"
    label = "Command"

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        argv = config.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError("Set 'argv' to a list of strings (no shell).")
        return config

    def run(self):
        timeout = float(self.config.get("timeout_seconds", 120))
        try:
            result = children.run(self.config["argv"], timeout)
        except subprocess.TimeoutExpired:
            raise FailoverError(f"timed out after {timeout:g} s") from None
        except FileNotFoundError:
            raise FailoverError(f"{self.config['argv'][0]}: command not found") from None
        if result.returncode != 0:
            raise FailoverError(
                f"exited with code {result.returncode}: {result.stderr.strip()[-300:]}"
            )
        return {"stdout": result.stdout[-2000:]}


class SetVariablesAction(ActionKind):
    """Set variables on an environment through its deploy provider (READ_ONLY=true, ...)."""

    kind = "set_variables"
    label = "Set environment variables"

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        if not config.get("environment") or not isinstance(config.get("variables"), dict):
            raise ValueError('Set "environment" and "variables", e.g. {"READ_ONLY": "true"}.')
        return config

    def run(self):
        env = Environment.objects.filter(name=self.config["environment"]).first()
        if env is None:
            raise FailoverError(f"no environment {self.config['environment']!r}")
        values = {k: str(v) for k, v in self.config["variables"].items()}
        try:
            env.backend.set_variables(values)
        except ProviderError as exc:
            raise FailoverError(exc.message) from None
        return {"environment": env.name, "set": sorted(values)}


class PromoteStandbyAction(ActionKind):
    """pg_promote() on a streaming standby, then a check that it left recovery."""

    kind = "promote_standby"
    label = "Promote a PostgreSQL standby"

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        if not secret.startswith(("postgres://", "postgresql://")):
            raise ValueError("Set the secret to the standby's postgresql:// URL.")
        return config

    def run(self):
        wait = int(self.config.get("wait_seconds", 60))
        try:
            params = outbound.pinned_conninfo(self.secret, autocommit=True, connect_timeout=10)
            with psycopg.connect(**params) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    raise FailoverError("the server is not a standby (already primary?)")
                promoted = conn.execute("SELECT pg_promote(true, %s)", [wait]).fetchone()[0]
                deadline = time.monotonic() + wait
                while conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    if time.monotonic() > deadline:
                        raise FailoverError(f"still in recovery after {wait} s")
                    time.sleep(0.2)
        except outbound.OutboundRefused as exc:
            raise FailoverError(f"refused: {exc}") from None
        except psycopg.Error as exc:
            raise FailoverError(str(exc).strip().splitlines()[0]) from None
        return {"promoted": bool(promoted), "in_recovery": False}


ACTION_KINDS: dict[str, type[ActionKind]] = {
    cls.kind: cls
    for cls in (WebhookAction, CommandAction, SetVariablesAction, PromoteStandbyAction)
}
