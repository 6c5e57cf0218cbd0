import json
import time

import pytest

from deployments.models import Environment
from opsconsole.webhooks import sign_timestamped
from tests.pgserver import free_port_block

SECRET = "deploy-signing-secret"


@pytest.fixture
def local_env(db):
    port = free_port_block(3)  # the router, and two slots for versions
    env = Environment(
        name="production", provider="local", provider_config={"port": port},
        base_url=f"http://127.0.0.1:{port}", webhook_secret=SECRET, rollback_mode="automatic",
        probe_requests=4, probe_timeout_seconds=2,
    )  # fmt: skip
    env.full_clean()
    env.save()
    # The provider keeps variables in a folder per environment name; no test sees another's.
    env.backend.varsfile.unlink(missing_ok=True)
    yield env
    env.backend.stop()
    env.backend.varsfile.unlink(missing_ok=True)


def post_webhook(client, payload, *, secret=SECRET, timestamp=None, raw=None, signature=None):
    body = raw if raw is not None else json.dumps(payload).encode()
    headers = sign_timestamped(
        secret, body, timestamp if timestamp is not None else int(time.time())
    )
    if signature is not None:
        headers["X-Opsconsole-Signature"] = signature
    return client.post(
        "/webhooks/deploy", data=body, content_type="application/json",
        HTTP_X_OPSCONSOLE_TIMESTAMP=headers["X-Opsconsole-Timestamp"],
        HTTP_X_OPSCONSOLE_SIGNATURE=headers["X-Opsconsole-Signature"],
    )  # fmt: skip
