"""Runs versions of the bundled sample service as local processes on loopback.

So the whole loop — deploy, watch, breach, roll back — can be watched on one
machine and in the demo. The process outlives the task that started it; its
pid is kept in a file so the next deploy or rollback replaces it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from deployments.providers.base import Provider, ProviderError
from opsconsole import http


def _running(pid: int) -> bool:
    """Alive and not a zombie (a child of another worker is never reaped by us)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


class LocalProvider(Provider):
    kind = "local"
    label = "Local sample service"

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        port = config.get("port")
        if not isinstance(port, int) or not 1024 <= port <= 65535:
            raise ValueError("Set 'port' to a free port number between 1024 and 65535.")
        return config

    @property
    def pidfile(self) -> Path:
        folder = Path(settings.VAR_DIR) / "local-provider"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{self.environment.name}.pid"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.config['port']}"

    def stop(self) -> None:
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            pid = int(self.pidfile.read_text())
            os.killpg(pid, signal.SIGTERM)
            for _ in range(50):
                if not _running(pid):
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)

    def deploy(self, version: str) -> dict:
        self.stop()
        env = {**os.environ, **self.variables(), "VERSION": version}
        process = subprocess.Popen(  # noqa: S603 - our own module, argv list
            [sys.executable, "-m", "deployments.sample_service", str(self.config["port"])],
            cwd=settings.BASE_DIR,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pidfile.write_text(str(process.pid))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.live_version() == version:
                return {"pid": process.pid, "version": version}
            if process.poll() is not None:
                raise ProviderError(f"the sample service exited with code {process.returncode}")
            time.sleep(0.1)
        raise ProviderError(f"version {version} did not start within 15 s")

    @property
    def varsfile(self) -> Path:
        return self.pidfile.with_suffix(".vars.json")

    def variables(self) -> dict[str, str]:
        import json

        try:
            return json.loads(self.varsfile.read_text())
        except FileNotFoundError:
            return {}

    def set_variables(self, values: dict[str, str]) -> None:
        """Kept beside the process; the next deploy or rollback starts with them."""
        import json

        merged = {**self.variables(), **values}
        fd = os.open(self.varsfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(merged, fh)

    def rollback(self, target) -> dict:
        return self.deploy(target.version)

    def live_version(self) -> str | None:
        try:
            return http.request("GET", f"{self.base}/version", timeout=2).json().get("version")
        except (http.HttpError, ValueError):
            return None
