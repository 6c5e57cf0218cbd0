"""The environment a child process gets: what it needs, never the console's own.

The console's environment holds SECRET_KEY, the encryption keys and the
database URL. A child (pg_dump, pg_restore, a failover or provider command,
the sample services) gets PATH, the locale, HOME and TZ, the variables named
in OPSCONSOLE_CHILD_ENV (for example KUBECONFIG or AWS_PROFILE, which a
command may need), and what its caller passes explicitly.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence

from django.conf import settings

from opsconsole import tracing

BASE = ("PATH", "LANG", "LC_ALL", "HOME", "TZ")
DEFAULTS = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """A minimal environment for a child process, plus `extra`."""
    names = (*BASE, *settings.OPSCONSOLE_CHILD_ENV)
    env = {**DEFAULTS, **{name: os.environ[name] for name in names if name in os.environ}}
    env.update(extra or {})
    return env


def run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """A command an operator configured: an argv list (no shell), the minimal environment,
    output captured as text, at most `timeout` seconds (else TimeoutExpired), traced as a
    child span with its exit code."""
    with tracing.process(argv) as exited:
        result = subprocess.run(  # noqa: S603 - argv list, no shell
            list(argv), env=child_env(), capture_output=True, text=True, timeout=timeout,
            check=False,
        )  # fmt: skip
        exited(result.returncode)
    return result
