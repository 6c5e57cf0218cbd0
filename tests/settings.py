"""Test settings: the real settings, isolated from the developer's environment.

A `.env` or an exported DATABASE_URL must never point the suite at a real
database, so the parts that reach outside are pinned here.
"""

import os
import tempfile

for name in ("DATABASE_URL", "REDIS_URL", "SENTRY_DSN", "OPSCONSOLE_ENV", "DEBUG", "SECRET_KEY"):
    os.environ.pop(name, None)
os.environ["OPSCONSOLE_ENV_FILE"] = os.devnull
os.environ.setdefault("OPSCONSOLE_VAR_DIR", tempfile.mkdtemp(prefix="opsconsole-test-var-"))
os.environ["SECRET_KEY"] = "test-secret-key-not-for-production-" + "x" * 20
# Two fixed keys: the first encrypts, both decrypt (rotation tests swap them).
os.environ["OPSCONSOLE_ENCRYPTION_KEYS"] = (
    "Ei4Wq2mQkGnzm5JYk7nq3CqkR5b8ZkJ4Wq2mQkGnzm4=,Zm9vYmFyYmF6cXV4cXV1eGJhemZvb2JhcmJhenF1eHE="
)

from opsconsole.settings import *  # noqa: E402,F403
from opsconsole.settings import INSTALLED_APPS, VAR_DIR  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
# The tests' peers (pytest-httpserver, sample services, moto, PostgreSQL) live on loopback.
OPSCONSOLE_OUTBOUND_ALLOW = ["127.0.0.0/8", "::1/128"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(VAR_DIR / "test.sqlite3"),
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
        "TEST": {"NAME": str(VAR_DIR / "test-db.sqlite3")},
    }
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The manifest exists only after collectstatic; pages render the same without it.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_AUTOREFRESH = True
