"""Configuration: refuse bad production settings in one line; production passes check --deploy."""

import pytest

from opsconsole import crypto
from tests.helpers import console_env, manage

PRODUCTION = {
    "OPSCONSOLE_ENV": "production",
    "SECRET_KEY": "k" * 20 + "a-long-random-production-secret-value-0123456789",
    "ALLOWED_HOSTS": "console.example.com",
}


@pytest.fixture
def key():
    return crypto.generate_key()


def test_production_without_secret_key_refuses_to_start(tmp_path, key):
    env = console_env(tmp_path, OPSCONSOLE_ENV="production", OPSCONSOLE_ENCRYPTION_KEYS=key)
    result = manage("check", env=env)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "opsconsole: configuration error: SECRET_KEY must be set when DEBUG is off"
    ]
    assert "Traceback" not in result.stderr + result.stdout


def test_production_without_encryption_keys_refuses_to_start(tmp_path):
    env = console_env(tmp_path, **PRODUCTION)
    result = manage("check", env=env)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "OPSCONSOLE_ENCRYPTION_KEYS must be set" in lines[0]
    assert not (tmp_path / "encryption_key").exists()


def test_a_malformed_key_is_named_but_not_echoed(tmp_path, key):
    env = console_env(tmp_path, **PRODUCTION, OPSCONSOLE_ENCRYPTION_KEYS=f"{key},not-a-real-key")
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "key 2 is not 32 bytes" in result.stderr
    assert "not-a-real-key" not in result.stderr
    assert key not in result.stderr


def test_unknown_environment_name_is_refused(tmp_path):
    result = manage("check", env=console_env(tmp_path, OPSCONSOLE_ENV="prod"))
    assert result.returncode != 0
    assert "OPSCONSOLE_ENV must be one of production, staging, development" in result.stderr


def test_check_deploy_is_clean_under_production_settings(tmp_path, key):
    env = console_env(tmp_path, **PRODUCTION, OPSCONSOLE_ENCRYPTION_KEYS=key)
    result = manage("check", "--deploy", "--fail-level", "DEBUG", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_development_generates_keys_under_var_and_says_so(tmp_path):
    result = manage("check", env=console_env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "SECRET_KEY is not set; generated a development value" in result.stderr
    assert "OPSCONSOLE_ENCRYPTION_KEYS is not set; generated a development value" in result.stderr
    key_file = tmp_path / "encryption_key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    crypto.parse_keys(key_file.read_text())
    # The second start reuses them quietly: the stored secrets stay readable.
    again = manage("check", env=console_env(tmp_path))
    assert "generated" not in again.stderr
