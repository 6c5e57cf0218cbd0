"""Settings, read from the environment (and an optional `.env`) with django-environ.

With no configuration at all the console runs on the embedded default: SQLite
under `var/`, the django-q2 ORM broker, a local backup folder and log-only
notifications. Each variable in `.env.example` switches one part to its
production form. A missing required value stops start-up with one line naming
the variable (see `manage.py`), never a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from opsconsole import crypto, tracing

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Real environment variables win over the file: read_env only sets what is unset.
environ.Env.read_env(env("OPSCONSOLE_ENV_FILE", default=str(BASE_DIR / ".env")))

ENVIRONMENTS = ("production", "staging", "development")
OPSCONSOLE_ENV = env("OPSCONSOLE_ENV", default="development")
if OPSCONSOLE_ENV not in ENVIRONMENTS:
    raise ImproperlyConfigured(
        f"OPSCONSOLE_ENV must be one of {', '.join(ENVIRONMENTS)}, not {OPSCONSOLE_ENV!r}"
    )
DEBUG = env.bool("DEBUG", default=OPSCONSOLE_ENV == "development")

VAR_DIR = Path(env("OPSCONSOLE_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _generated_secret(name: str, filename: str, make) -> str:
    """Read a development secret from var/, creating it (mode 0600) the first time."""
    path = VAR_DIR / filename
    if path.exists():
        return path.read_text().strip()
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    # Logging is not configured yet while settings load; stderr is the honest place.
    os.write(
        2, f"opsconsole: {name} is not set; generated a development value in {path}\n".encode()
    )
    return value


SECRET_KEY = env("SECRET_KEY", default="")
if not SECRET_KEY:
    if DEBUG:
        SECRET_KEY = _generated_secret(
            "SECRET_KEY", "secret_key", lambda: secrets.token_urlsafe(50)
        )
    else:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")

_keys = env("OPSCONSOLE_ENCRYPTION_KEYS", default="")
if not _keys:
    if OPSCONSOLE_ENV != "development":
        raise ImproperlyConfigured(
            f"OPSCONSOLE_ENCRYPTION_KEYS must be set when OPSCONSOLE_ENV is {OPSCONSOLE_ENV} "
            "(make one with: manage.py generate_encryption_key)"
        )
    _keys = _generated_secret("OPSCONSOLE_ENCRYPTION_KEYS", "encryption_key", crypto.generate_key)
try:
    OPSCONSOLE_ENCRYPTION_KEYS = crypto.parse_keys(_keys)
except ValueError as exc:
    raise ImproperlyConfigured(f"OPSCONSOLE_ENCRYPTION_KEYS: {exc}") from None

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_q",
    "axes",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "opsconsole.apps.OpsConsoleConfig",
    "opsconsole.apps.OpsAdminConfig",
    "alerts",
    "backups",
    "deployments",
    "dr",
    # Sample data for the whole console (`manage.py demo`); nothing imports it.
    "demo",
]

MIDDLEWARE = [
    "opsconsole.middleware.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    # Login everywhere; health, webhook and API views opt out with @login_not_required.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "opsconsole.login.SessionPolicyMiddleware",
    "opsconsole.login.SecondFactorMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its refusal page.
    "axes.middleware.AxesMiddleware",
]
AUTHENTICATION_BACKENDS = [
    # Refuses logins from a locked-out user or address before a password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "admin:login"

ROOT_URLCONF = "opsconsole.urls"
WSGI_APPLICATION = "opsconsole.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'opsconsole.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web and workers write at once: WAL lets readers proceed, IMMEDIATE makes a
    # writer queue for the lock up front instead of failing halfway with
    # "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DATABASE_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# django-q2. The ORM broker is the default because it acknowledges a task only
# when it finished: a worker that dies mid-task has it re-delivered. Redis is
# faster but BLPOP loses the task of a dead worker. Every task claims its record
# first, so a re-run is harmless. Either way the reconciler (on the alert path)
# re-drives work whose task a dead cluster took, and settles work whose lease ran out.
Q_TIMEOUT = env.int("Q_TIMEOUT", default=3600)
Q_CLUSTER = {
    "name": "opsconsole",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": Q_TIMEOUT,
    "retry": Q_TIMEOUT + 120,  # must exceed timeout, or a long task runs twice
    "max_attempts": 3,
    "ack_failures": True,
    "catch_up": False,
    "save_limit": 1000,
    "label": "Task queue",
}
REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Logging: JSON lines by default, human-readable under `serve --dev`.
LOG_LEVEL = env("LOG_LEVEL", default="INFO").upper()
LOG_FORMAT = env("LOG_FORMAT", default="json")
if LOG_FORMAT not in ("json", "text"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or text, not {LOG_FORMAT!r}")
SLOW_QUERY_MS = env.float("OPSCONSOLE_SLOW_QUERY_MS", default=1000.0)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "opsconsole.logs.ContextFilter"},
        "redact": {"()": "opsconsole.logs.RedactingFilter"},
    },
    "formatters": {
        "json": {"()": "opsconsole.logs.JsonFormatter"},
        "text": {"()": "opsconsole.logs.TextFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["context", "redact"],
            "formatter": LOG_FORMAT,
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # The access log middleware writes one line per request; Django's own
        # request/server loggers would repeat it.
        "django.server": {"level": "WARNING"},
        "django.request": {"level": "ERROR"},
        "django_q": {"level": env("Q_LOG_LEVEL", default="WARNING").upper()},
        # httpx logs every request URL at INFO, and a webhook URL can be the
        # credential itself; opsconsole.http logs a redacted line instead.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
    },
}

# The address people reach the console at: links in notifications point here.
OPSCONSOLE_BASE_URL = env("OPSCONSOLE_BASE_URL", default="http://127.0.0.1:8000")

# Email for notifications (smtp://user:password@host:587, or consolemail:// to print).
EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
globals().update(EMAIL_CONFIG)  # EMAIL_BACKEND, EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER, ...
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="opsconsole@localhost")
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=15)

# Alerts.
ALERTS_SAMPLE_RETENTION_DAYS = env.int("ALERTS_SAMPLE_RETENTION_DAYS", default=30)
ALERTS_MAX_SILENCE_HOURS = env.int("ALERTS_MAX_SILENCE_HOURS", default=7 * 24)
ALERTS_ACK_LINK_MAX_AGE = env.int("ALERTS_ACK_LINK_MAX_AGE", default=24 * 3600)
SENTRY_WEBHOOK_SECRET = env("SENTRY_WEBHOOK_SECRET", default="")
OPSCONSOLE_PAGERDUTY_EVENTS_URL = env(
    "OPSCONSOLE_PAGERDUTY_EVENTS_URL", default="https://events.pagerduty.com/v2/enqueue"
)
# Another Twilio API host (an egress proxy; the tests' local server). Empty: api.twilio.com.
OPSCONSOLE_TWILIO_BASE_URL = env("OPSCONSOLE_TWILIO_BASE_URL", default="")

# Signs deploy webhooks for environments without their own secret.
OPSCONSOLE_WEBHOOK_SECRET = env("OPSCONSOLE_WEBHOOK_SECRET", default="")

# Private and loopback networks (CIDRs) the console may connect to for what operators
# configure: health checks, providers, failover targets, channels, metric sources.
# Link-local and cloud metadata addresses are never reachable. See opsconsole/outbound.py.
OPSCONSOLE_OUTBOUND_ALLOW = env.list("OPSCONSOLE_OUTBOUND_ALLOW", default=[])
for _network in OPSCONSOLE_OUTBOUND_ALLOW:
    try:
        ipaddress.ip_network(_network.strip(), strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"OPSCONSOLE_OUTBOUND_ALLOW: {_network!r} is not a network such as 10.0.0.0/8"
        ) from None

# Child processes get PATH, the locale, HOME and TZ only, plus these variables by
# name (e.g. KUBECONFIG,AWS_PROFILE for command providers). Never the console's own.
OPSCONSOLE_CHILD_ENV = env.list("OPSCONSOLE_CHILD_ENV", default=[])

# Disaster recovery: the public status page (service names, states, open incident titles).
DR_STATUS_PAGE_ENABLED = env.bool("DR_STATUS_PAGE_ENABLED", default=False)
DR_STATUS_PAGE_TITLE = env("DR_STATUS_PAGE_TITLE", default="Service status")

# Leases: a worker running long work renews its record's lease every quarter of this; the
# reconciler settles a record whose lease ran out (its worker died) within this plus 10 s.
OPSCONSOLE_LEASE_SECONDS = env.int("OPSCONSOLE_LEASE_SECONDS", default=60)
if OPSCONSOLE_LEASE_SECONDS < 4:
    raise ImproperlyConfigured("OPSCONSOLE_LEASE_SECONDS must be at least 4")
# The dead-man's switch: a healthchecks.io-compatible URL pinged every 30 s while the whole
# alert path is on time (and at <url>/fail when it is not). Empty: off.
OPSCONSOLE_HEARTBEAT_URL = env("OPSCONSOLE_HEARTBEAT_URL", default="")

# Backups.
BACKUPS_TIMEOUT_SECONDS = env.int("BACKUPS_TIMEOUT_SECONDS", default=6 * 3600)
# A recovered server kept to look into is stopped after this many hours.
PITR_KEEP_HOURS = env.int("PITR_KEEP_HOURS", default=24)
BACKUPS_ZSTD_LEVEL = env.int("BACKUPS_ZSTD_LEVEL", default=3)
# Extra age identities (AGE-SECRET-KEY-1…, comma-separated) for backups encrypted to keys
# the console does not keep, e.g. a policy's own recipient.
BACKUPS_AGE_IDENTITIES = env.list("BACKUPS_AGE_IDENTITIES", default=[])
# Where pg_dump/pg_restore live (default: the newest /usr/lib/postgresql/*/bin).
OPSCONSOLE_PG_BIN = env("OPSCONSOLE_PG_BIN", default="")

BUILD_ID = env("OPSCONSOLE_BUILD_ID", default=env("RAILWAY_GIT_COMMIT_SHA", default="dev"))[:12]
WORKER_HEARTBEAT_MAX_AGE = env.int("OPSCONSOLE_WORKER_HEARTBEAT_MAX_AGE", default=120)

# Logins. Failed attempts are throttled per user and per address (django-axes): after
# OPSCONSOLE_LOGIN_FAILURES in a row that one is refused for the cool-off, or until an
# administrator unlocks it (Axes → Access attempts → delete, or `axes_reset`).
AXES_FAILURE_LIMIT = env.int("OPSCONSOLE_LOGIN_FAILURES", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("OPSCONSOLE_LOGIN_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# A second factor (TOTP, with recovery codes): "approvers" (anyone who can approve,
# and superusers) or "everyone". Others may turn it on for themselves.
OPSCONSOLE_SECOND_FACTOR = env("OPSCONSOLE_SECOND_FACTOR", default="approvers")
if OPSCONSOLE_SECOND_FACTOR not in ("approvers", "everyone"):
    raise ImproperlyConfigured("OPSCONSOLE_SECOND_FACTOR must be approvers or everyone")
OTP_TOTP_ISSUER = "opsconsole"
# Sessions end after this long whatever happens, and after an hour without activity for
# anyone who can approve (OPSCONSOLE_IDLE_MINUTES for everyone else).
SESSION_COOKIE_AGE = env.int("OPSCONSOLE_SESSION_HOURS", default=12) * 3600
OPSCONSOLE_APPROVER_IDLE_MINUTES = env.int("OPSCONSOLE_APPROVER_IDLE_MINUTES", default=60)
OPSCONSOLE_IDLE_MINUTES = env.int("OPSCONSOLE_IDLE_MINUTES", default=8 * 60)
# Content-Security-Policy: nothing from another origin, no inline script. (Django's admin
# writes a few style attributes, so inline styles stay allowed; scripts never are.)
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

# Security. Behind Railway's (or any) TLS-terminating proxy.
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Platform health probes speak plain HTTP from inside the network.
    SECURE_REDIRECT_EXEMPT = [r"^health(/|$)"]
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    # The header alone enrols nothing; submitting the domain to the list does.
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)

# Tracing: the standard OTEL_* variables (docs/tracing.md); off with no OTLP endpoint.
if problem := tracing.check_environment():
    raise ImproperlyConfigured(problem)
OPSCONSOLE_TRACES_SAMPLE_RATE = env.float("OPSCONSOLE_TRACES_SAMPLE_RATE", default=None)
try:
    OPSCONSOLE_TRACES_SAMPLE_RATE = tracing.sample_rate(
        OPSCONSOLE_ENV, OPSCONSOLE_TRACES_SAMPLE_RATE
    )
except ValueError as exc:
    raise ImproperlyConfigured(f"OPSCONSOLE_TRACES_SAMPLE_RATE: {exc}") from None

SENTRY_DSN = env("SENTRY_DSN", default="")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=None)
if SENTRY_DSN:
    from opsconsole import sentry

    try:
        sentry.init(
            dsn=SENTRY_DSN,
            environment=OPSCONSOLE_ENV,
            traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
            release=BUILD_ID,
            opentelemetry=tracing.configured(),
        )
    except ValueError as exc:
        raise ImproperlyConfigured(f"Sentry: {exc}") from None
