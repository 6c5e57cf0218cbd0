"""Any tool with a command line (Docker, kubectl, Helm ...): argv templates, no shell."""

from __future__ import annotations

import subprocess

from deployments.providers.base import Provider, ProviderError
from opsconsole import children

PLACEHOLDERS = ("{version}", "{deployment_id}", "{environment}", "{percent}")
TEMPLATES = ("deploy", "rollback", "status", "set_weights")
STATUS_TIMEOUT_SECONDS = 10.0


class CommandProvider(Provider):
    kind = "command"
    label = "Command"

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        for key in TEMPLATES:
            value = config.get(key)
            if value is None:
                continue
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(a, str) for a in value)
            ):
                raise ValueError(
                    f'\'{key}\' is an argv list of strings, e.g. ["kubectl", "rollout", "undo"].'
                )
        if "rollback" not in config:
            raise ValueError("Set 'rollback' to the command that makes {version} live.")
        timeout = config.get("timeout_seconds", 300)
        if not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError("timeout_seconds must be a positive number.")
        return config

    @property
    def supports_weights(self) -> bool:  # type: ignore[override]
        """Only with a set_weights template: a gradual rollback is never faked."""
        return bool(self.config.get("set_weights"))

    def _run(
        self, key: str, target=None, percent: int | None = None, timeout: float | None = None
    ) -> subprocess.CompletedProcess:
        values = {
            "{version}": target.version if target else "",
            "{deployment_id}": target.external_id if target else "",
            "{environment}": self.environment.name,
            "{percent}": "" if percent is None else str(percent),
        }
        if any(v.startswith("-") for v in values.values()):
            raise ProviderError("a value for the command starts with '-': refused")
        argv = [values.get(arg, arg) for arg in self.config[key]]
        timeout = timeout or float(self.config.get("timeout_seconds", 300))
        try:
            result = children.run(argv, timeout)
        except subprocess.TimeoutExpired:
            raise ProviderError(f"{argv[0]} timed out after {timeout:g} s") from None
        except FileNotFoundError:
            raise ProviderError(f"{argv[0]}: command not found") from None
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip()[-500:]
            raise ProviderError(
                f"{argv[0]} exited with code {result.returncode}: {tail}",
                {"stdout": result.stdout[-2000:], "stderr": result.stderr[-2000:]},
            )
        return result

    def rollback(self, target) -> dict:
        result = self._run("rollback", target)
        return {"stdout": result.stdout[-2000:], "stderr": result.stderr[-2000:]}

    def begin_gradual(self, target):
        if self.config.get("deploy"):
            self._run("deploy", target)  # start the target beside what is live
        return target

    def set_share(self, target, percent: int) -> None:
        self._run("set_weights", target, percent)

    def complete(self, target) -> dict:
        return {"stdout": self._run("set_weights", target, 100).stdout[-2000:]}

    def abort(self, target) -> None:
        self._run("set_weights", target, 0)

    def live_version(self) -> str | None:
        if not self.config.get("status"):
            return None
        try:
            # Asked every minute by a worker: a status that hangs must not hold it long.
            return self._run("status", timeout=STATUS_TIMEOUT_SECONDS).stdout.strip() or None
        except ProviderError:
            return None
