"""A working console in one command, on the embedded default: `manage.py demo`.

Everything it makes is ordinary data a person could have entered in the admin:
two environments of the bundled sample service (local provider), the console's
own database (and a small sample database on a PostgreSQL server, when one is
reachable) as backup targets with their default policies and recovery
objectives, health checks on the sample service, three people with the three
roles, and one in-console inbox per level of the default escalation policy,
shortened to 0 / 2 / 4 minutes so escalation can be watched (other channels
are switched off). Running it again brings the same state back.
"""

from __future__ import annotations

import base64
import secrets
from datetime import timedelta
from urllib.parse import urlsplit, urlunsplit

import psycopg
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

from alerts.models import Channel, EscalationPolicy
from backups.models import DatabaseTarget
from deployments import intake
from deployments.models import (
    Deployment,
    Environment,
    EnvironmentVariable,
    TemplateDefault,
    TemplateVariable,
    VariableTemplate,
)
from deployments.providers.base import ProviderError
from dr.health import run_due
from dr.models import RecoveryObjective, Runbook, ServiceCheck
from opsconsole.tasks import enqueue

PEOPLE = {"alice": "Operator", "bob": "Approver", "carol": "Viewer"}
INBOXES = ("On-call inbox", "Team lead inbox", "Engineering manager inbox")
# The shipped chain is 0 / 15 / 30 minutes; the demo's is short enough to watch.
DEMO_ESCALATION_MINUTES = (0, 2, 4)
SAMPLE_DATABASE = "opsconsole_demo_shop"
DEFAULT_PORT = 18400


class DemoError(Exception):
    """Said to the user in one line."""


def setup(*, password: str | None = None, postgres_url: str = "", port: int = DEFAULT_PORT) -> dict:
    """Create (or bring back) the demo; returns what the user needs to know."""
    if settings.OPSCONSOLE_ENV == "production":
        raise DemoError("the demo is not for production; it creates users and sample services")
    if not 1024 <= port <= 65535 - 13:
        raise DemoError(
            f"--port {port}: choose a port from 1024 to {65535 - 13} (it uses 13 from there)"
        )
    with transaction.atomic():
        people = _people(password)
        _inbox_channels()
        environments = [
            _environment("production", port, mode="automatic", two_people=True),
            _environment("staging", port + 10, mode="ask", two_people=False),
        ]
        template = _variable_template()
        targets = [_console_target()]
    shop = _sample_postgres(postgres_url) if postgres_url else None
    if shop:
        targets.append(shop)
    for target in targets:
        RecoveryObjective.objects.get_or_create(target=target)
    for env in environments:
        _variables(env, template)
        _two_versions(env)
        _health_check(env)

    run_due()  # the dashboard shows real states from the first page on
    return {
        "people": people,
        "authenticator_keys": authenticator_keys(),
        "environments": [e.name for e in environments],
        "targets": [t.name for t in targets],
        "postgres": bool(shop),
    }


def deploy(environment: str, version: str) -> Deployment:
    """What a pipeline does: put `version` live with the provider, then tell the console."""
    env = Environment.objects.filter(name=environment).first()
    if env is None:
        raise DemoError(f"no environment named {environment!r}; run `manage.py demo` first")

    try:
        env.backend.deploy(version)
    except ProviderError as exc:
        raise DemoError(str(exc)) from None
    with transaction.atomic():
        deployment, _ = intake.receive(
            env,
            {
                "deployment_id": f"demo-{timezone.now():%Y%m%d%H%M%S%f}",
                "version": version,
                "status": "succeeded",
                "started_by": "demo",
            },
        )
        transaction.on_commit(
            lambda: enqueue("deployments.tasks.process_deployment", deployment.pk)
        )
    return deployment


def stop() -> int:
    """Stop the sample services of every local environment."""
    stopped = 0
    for env in Environment.objects.filter(provider="local"):
        env.backend.stop()
        stopped += 1
    return stopped


# --- the parts ------------------------------------------------------------------------


def _people(password: str | None) -> dict[str, str]:
    User = get_user_model()
    made = {}
    for username, role in PEOPLE.items():
        user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": True})
        chosen = password or secrets.token_urlsafe(9)
        user.is_staff, user.is_active = True, True
        user.set_password(chosen)
        user.save()
        user.groups.set([Group.objects.get(name=role)])
        made[username] = chosen
    return made


def authenticator_keys() -> dict[str, str]:
    """An enrolled authenticator (TOTP) for each demo person who must give a second factor,
    so the demo's approver can sign in: {username: base32 key} to add to an app."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from opsconsole.login import needs_second_factor

    keys = {}
    for user in get_user_model().objects.filter(username__in=PEOPLE):
        if needs_second_factor(user):
            TOTPDevice.objects.filter(user=user).delete()
            device = TOTPDevice.objects.create(user=user, name="demo authenticator")
            keys[user.username] = base64.b32encode(device.bin_key).decode().rstrip("=")
    return keys


def _inbox_channels() -> None:
    """Every notification lands in the console's inbox; nothing leaves the machine."""
    Channel.objects.exclude(kind="inbox").update(enabled=False)
    inboxes = []
    for name in INBOXES:
        channel, _ = Channel.objects.update_or_create(
            name=name,
            defaults={
                "kind": "inbox",
                "enabled": True,
                "priorities": ["critical", "high", "medium", "low"],
            },
        )
        inboxes.append(channel)
    policy = EscalationPolicy.default()
    if policy is None:
        policy = EscalationPolicy.objects.create(name="Default", is_default=True)
    for position, (channel, minutes) in enumerate(
        zip(inboxes, DEMO_ESCALATION_MINUTES, strict=True)
    ):
        level, _ = policy.levels.update_or_create(
            position=position, defaults={"delay_minutes": minutes}
        )
        level.channels.set([channel])


def _environment(name: str, port: int, *, mode: str, two_people: bool) -> Environment:
    env = Environment.objects.filter(name=name).first() or Environment(name=name)
    env.provider = "local"
    env.provider_config = {"port": port}
    env.base_url = f"http://127.0.0.1:{port}"
    env.rollback_mode = mode
    env.two_person_rule = two_people
    # Production deploys wait for an approver at the deploy gate.
    env.require_deploy_approval = two_people
    env.probe_requests = 10
    env.probe_timeout_seconds = 2
    if not env.webhook_secret:
        env.webhook_secret = secrets.token_urlsafe(24)
    env.full_clean()
    env.save()
    return env


# The sample service's variables: what each is, what a value must look like, where it
# starts. Data a person could have entered under Variable templates.
SAMPLE_VARIABLES = (
    ("DATABASE_URL", "PostgreSQL connection string", "url", "", True),
    ("REDIS_URL", "Cache and sessions", "url", "", True),
    ("JWT_SECRET", "Signs session tokens; at least 32 characters", "pattern", ".{32,}", True),
    ("LOG_LEVEL", "How much the service logs", "enum", "debug,info,warn,error", True),
    ("NODE_ENV", "Runtime mode", "enum", "development,production", True),
    ("PORT", "Port the service listens on", "number", "", True),
    ("VIDEO_CDN_URL", "Where video files are served from", "url", "", True),
    ("SENTRY_DSN", "Error reporting; empty turns it off", "url", "", False),
)
SAMPLE_DEFAULTS = {"LOG_LEVEL": "info", "NODE_ENV": "production", "PORT": "3000"}
STAGING_DEFAULTS = {"LOG_LEVEL": "debug"}


def _variable_template() -> VariableTemplate:
    template, _ = VariableTemplate.objects.update_or_create(
        name="shorts-api", defaults={"description": "The bundled sample service (the demo's)."}
    )
    for name, description, kind, rule, required in SAMPLE_VARIABLES:
        TemplateVariable.objects.update_or_create(
            template=template, name=name,
            defaults={"description": description, "kind": kind, "rule": rule,
                      "required": required},
        )  # fmt: skip
    staging = Environment.objects.get(name="staging")
    for env, values in ((None, SAMPLE_DEFAULTS), (staging, STAGING_DEFAULTS)):
        for name, value in values.items():
            TemplateDefault.objects.update_or_create(
                template=template, name=name, environment=env, defaults={"value": value}
            )
    return template


def _variables(env: Environment, template: VariableTemplate) -> None:
    """The template's starting values and made-up connection strings, pushed to the
    sample service's provider: the gate finds every required variable, and the drift
    check starts from here (edit var/local-provider/<env>/variables.json to see it)."""
    env.variable_template = template
    env.save(update_fields=["variable_template"])
    host = f"{env.name}.internal"
    values = {
        **template.defaults_for(env),
        "DATABASE_URL": f"postgresql://shorts:{secrets.token_urlsafe(12)}@{host}:5432/shorts",
        "REDIS_URL": f"redis://default:{secrets.token_urlsafe(12)}@{host}:6379/0",
        "JWT_SECRET": secrets.token_urlsafe(32),
        "VIDEO_CDN_URL": f"https://cdn.{env.name}.example.com",
    }
    have = set(env.variables.values_list("name", flat=True))
    for name, value in values.items():
        if name not in have:
            EnvironmentVariable.objects.create(environment=env, name=name, value=value)
    env.push_variables()


def _two_versions(env: Environment) -> None:
    """v1.0 ran for hours, v1.1 is live and has run an hour: both are rollback targets."""
    try:
        env.backend.deploy("v1.1")
    except ProviderError as exc:
        raise DemoError(f"{env}: the sample service did not start: {exc}") from None
    if env.deployments.filter(external_id__in=["demo-v1.0", "demo-v1.1"]).count() == 2:
        env.deployments.filter(external_id="demo-v1.1").update(status="succeeded", ended_at=None)
        return
    now = timezone.now()
    history = (
        ("demo-v1.0", "v1.0", now - timedelta(hours=26), now - timedelta(hours=2)),
        ("demo-v1.1", "v1.1", now - timedelta(hours=2), None),
    )
    for external_id, version, live_at, ended_at in history:
        Deployment.objects.update_or_create(
            environment=env,
            external_id=external_id,
            defaults={
                "version": version,
                "status": Deployment.Status.SUCCEEDED,
                "started_by": "demo",
                "received_at": live_at,
                "live_at": live_at,
                "finished_at": live_at + timedelta(minutes=env.watch_minutes),
                "ended_at": ended_at,
            },
        )


def _health_check(env: Environment) -> None:
    ServiceCheck.objects.update_or_create(
        name=f"{env.name} API",
        defaults={
            "kind": "http",
            "config": {"url": f"{env.base_url}/health", "expected_status": 200},
            "interval_seconds": 30,
            "timeout_seconds": 5,
            "retries": 3,
            "runbook": Runbook.objects.filter(scenario="API failure").first(),
            "enabled": True,
        },
    )


def _console_target() -> DatabaseTarget:
    """The console's own database: SQLite by default, or the PostgreSQL it runs on."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        engine, dsn = "sqlite", f"sqlite:///{db['NAME']}"
    else:
        netloc = f"{db['USER']}:{db['PASSWORD']}@" if db["PASSWORD"] else f"{db['USER']}@"
        dsn = f"postgresql://{netloc}{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        engine = "postgresql"
    target = DatabaseTarget.objects.filter(name="console").first()
    if target is None:
        target = DatabaseTarget(name="console", production=True)
    target.engine, target.dsn = engine, dsn
    target.full_clean()
    target.save()
    return target


def _sample_postgres(url: str) -> DatabaseTarget | None:
    """A small shop database on the PostgreSQL server at `url`, when it answers."""
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [SAMPLE_DATABASE]
            ).fetchone()
            if not exists:
                admin.execute(f'CREATE DATABASE "{SAMPLE_DATABASE}"')
    except psycopg.Error:
        return None
    parts = urlsplit(url)
    shop_url = urlunsplit(parts._replace(path=f"/{SAMPLE_DATABASE}"))
    with psycopg.connect(shop_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS users (id serial PRIMARY KEY, email text NOT NULL UNIQUE,"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, user_id int NOT NULL"
            " REFERENCES users(id), total_cents int NOT NULL, placed_at timestamptz NOT NULL"
            " DEFAULT now())"
        )
        conn.execute("CREATE TABLE IF NOT EXISTS logs (id serial PRIMARY KEY, line text NOT NULL)")
        if conn.execute("SELECT count(*) FROM users").fetchone()[0] == 0:
            conn.execute(
                "INSERT INTO users (email) SELECT 'user' || i || '@example.com'"
                " FROM generate_series(1, 2000) i"
            )
            conn.execute(
                "INSERT INTO orders (user_id, total_cents) SELECT 1 + (i % 2000), 100 + i % 9000"
                " FROM generate_series(1, 20000) i"
            )
            conn.execute(
                "INSERT INTO logs (line) SELECT 'request ' || i FROM generate_series(1, 5000) i"
            )
    target = DatabaseTarget.objects.filter(name="shop").first() or DatabaseTarget(name="shop")
    target.engine, target.dsn = "postgresql", shop_url
    target.production = True
    target.required_tables = ["users", "orders"]
    target.check_queries = ["SELECT count(*) > 0 FROM orders"]
    target.full_clean()
    target.save()
    return target
