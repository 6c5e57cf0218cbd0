"""Runs versions of the bundled sample service as local processes on loopback.

So the whole life of a deploy — deploy, watch, breach, roll back — can be
watched on one machine and in the demo. Three processes per environment: a
weighted router on the environment's port and two slots behind it (port+1,
port+2). A deploy starts the new version in the idle slot, moves the weights
to it and stops the other (blue/green); weights in between make a gradual
rollback possible. Each process outlives the task that started it and keeps
its pid in a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings

from deployments.providers.base import Provider, ProviderError
from opsconsole import http
from opsconsole.children import child_env


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
    """A router on the environment's port splits traffic between two slots (port+1, port+2)."""

    kind = "local"
    label = "Local sample service"
    supports_weights = True

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        port = config.get("port")
        if not isinstance(port, int) or not 1024 <= port <= 65533:
            raise ValueError(
                "Set 'port' to a free port between 1024 and 65533 (it uses the next two too)."
            )
        return config

    # --- files and processes --------------------------------------------------------
    @property
    def folder(self) -> Path:
        folder = Path(settings.VAR_DIR) / "local-provider" / self.environment.name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def weights_file(self) -> Path:
        return self.folder / "weights.json"

    @property
    def varsfile(self) -> Path:
        return self.folder / "variables.json"

    def slot_port(self, slot: int) -> int:
        return self.config["port"] + slot

    def _pid(self, name: str) -> int | None:
        try:
            pid = int((self.folder / f"{name}.pid").read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if _running(pid) else None

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> int:
        process = subprocess.Popen(  # noqa: S603 - our own modules, argv list
            [sys.executable, "-m", *argv], cwd=settings.BASE_DIR, env=env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        (self.folder / f"{name}.pid").write_text(str(process.pid))
        return process.pid

    def _kill(self, name: str) -> None:
        pid = self._pid(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
                for _ in range(50):
                    if not _running(pid):
                        break
                    time.sleep(0.1)
                else:
                    os.killpg(pid, signal.SIGKILL)
        (self.folder / f"{name}.pid").unlink(missing_ok=True)
        (self.folder / f"{name}.version").unlink(missing_ok=True)

    def stop(self) -> None:
        for name in ("router", "slot1", "slot2"):
            self._kill(name)

    def _ensure_router(self) -> None:
        if self._pid("router") is None:
            argv = ["deployments.sample_router", str(self.config["port"]), str(self.weights_file)]
            self._spawn("router", argv, child_env())

    def _weights(self) -> dict[int, int]:
        try:
            data = json.loads(self.weights_file.read_text())["backends"]
        except (FileNotFoundError, ValueError, KeyError):
            return {}
        return {b["port"] - self.config["port"]: b["weight"] for b in data}

    def _set_weights(self, shares: dict[int, int]) -> None:
        backends = [
            {"port": self.slot_port(slot), "weight": weight} for slot, weight in shares.items()
        ]
        partial = self.weights_file.with_suffix(".tmp")
        partial.write_text(json.dumps({"backends": backends}))
        os.replace(partial, self.weights_file)  # the router never reads half a file

    def _live_slot(self) -> int | None:
        weights = self._weights()
        return max(weights, key=weights.get) if weights else None

    def _start(self, version: str) -> int:
        """Start `version` in the slot not serving traffic; return the slot."""
        live = self._live_slot()
        slot = 2 if live == 1 else 1
        self._kill(f"slot{slot}")
        env = child_env({**self.variables(), "VERSION": version})
        pid = self._spawn(
            f"slot{slot}", ["deployments.sample_service", str(self.slot_port(slot))], env
        )
        (self.folder / f"slot{slot}.version").write_text(version)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self._version_at(self.slot_port(slot)) == version:
                return slot
            if not _running(pid):
                raise ProviderError(
                    f"version {version} exited while starting "
                    f"(is port {self.slot_port(slot)} free?)"
                )
            time.sleep(0.1)
        raise ProviderError(f"version {version} did not start within 15 s")

    def _version_at(self, port: int) -> str | None:
        try:
            return (
                http.request("GET", f"http://127.0.0.1:{port}/version", timeout=2)
                .json()
                .get("version")
            )
        except (http.HttpError, ValueError):
            return None

    # --- what the console asks ------------------------------------------------------------
    def deploy(self, version: str) -> dict:
        self._ensure_router()
        slot = self._start(version)
        self.set_share(slot, 100)
        return self.complete(slot)

    def rollback(self, target) -> dict:
        return self.deploy(target.version)

    def begin_gradual(self, target) -> int:
        self._ensure_router()
        return self._start(target.version)

    def set_share(self, slot: int, percent: int) -> None:
        other = 2 if slot == 1 else 1
        self._set_weights({slot: percent, other: 100 - percent})

    def complete(self, slot: int) -> dict:
        other = 2 if slot == 1 else 1
        self._set_weights({slot: 100, other: 0})
        self._kill(f"slot{other}")
        version = (self.folder / f"slot{slot}.version").read_text()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.live_version() != version:
            time.sleep(0.1)
        return {"slot": slot, "version": version, "port": self.config["port"]}

    def abort(self, slot: int) -> None:
        other = 2 if slot == 1 else 1
        self._set_weights({slot: 0, other: 100})
        self._kill(f"slot{slot}")

    def live_version(self) -> str | None:
        return self._version_at(self.config["port"])

    def variables(self) -> dict[str, str]:
        try:
            return json.loads(self.varsfile.read_text())
        except FileNotFoundError:
            return {}

    def set_variables(self, values: dict[str, str]) -> None:
        """Kept beside the processes; the next deploy or rollback starts with them."""
        merged = {**self.variables(), **values}
        fd = os.open(self.varsfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(merged, fh)
