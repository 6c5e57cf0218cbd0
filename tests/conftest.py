from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from tests.pgserver import PostgresUnavailable, postgres_server


def _user(django_user_model, username: str, role: str | None):
    user = django_user_model.objects.create_user(
        username=username, password=f"{username}-password", is_staff=True
    )
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def alice(db, django_user_model):
    """An operator: runs jobs, requests rollbacks and restores."""
    return _user(django_user_model, "alice", "Operator")


@pytest.fixture
def bob(db, django_user_model):
    """An approver."""
    return _user(django_user_model, "bob", "Approver")


@pytest.fixture
def carol(db, django_user_model):
    """A viewer: looks, changes nothing."""
    return _user(django_user_model, "carol", "Viewer")


@pytest.fixture
def api_token(db):
    from opsconsole.models import ApiToken

    _, token = ApiToken.issue("tests", scopes=list(ApiToken.SCOPES))
    return token


def login(client, user):
    client.force_login(user)
    return client


def pytest_addoption(parser):
    parser.addoption(
        "--postgres",
        action="store_true",
        help="run the Django test database on PostgreSQL (TEST_DATABASE_URL or a throwaway cluster)",
    )


@pytest.fixture(scope="session")
def django_db_modify_db_settings(request, django_db_modify_db_settings_parallel_suffix):
    """With --postgres, the whole suite's database is a real PostgreSQL server."""
    if not request.config.getoption("--postgres"):
        return
    from urllib.parse import urlsplit

    from django.conf import settings

    url = urlsplit(request.getfixturevalue("pg").admin_dsn)
    # In place: Django's connection handler holds this very dict.
    database = settings.DATABASES["default"]
    database.update({
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "opsconsole",
        "USER": url.username or "postgres",
        "PASSWORD": url.password or "",
        "HOST": url.hostname,
        "PORT": str(url.port or 5432),
        "OPTIONS": {},
        "CONN_MAX_AGE": 0,
    })  # fmt: skip
    database["TEST"]["NAME"] = "test_opsconsole"
    # A connection made while collecting tests still has the SQLite backend class.
    from django.db import connections

    connections["default"].close()
    del connections["default"]


@pytest.fixture(scope="session")
def pg():
    """A real PostgreSQL server (TEST_DATABASE_URL or a throwaway cluster)."""
    try:
        with postgres_server() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.exit(f"opsconsole tests: {exc}", returncode=1)


def pytest_collection_modifyitems(config, items):
    """Races on the console's own database are real only on PostgreSQL.

    The SQLite test settings open every transaction IMMEDIATE, so two writers
    never interleave there and a race test would pass whatever the code does.
    Such tests are left out of the SQLite pass (not skipped: they run, and
    must pass, in the --postgres pass of `make test`).
    """
    if config.getoption("--postgres"):
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("postgres_db") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(autouse=True)
def second_factor_given(monkeypatch):
    """Tests that log someone in with force_login() act for a person who also gave their
    second factor (as django-otp's login() records it). The second factor itself is
    tested through the real pages in tests/security/test_login.py."""
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY

    from opsconsole.login import needs_second_factor

    force_login = Client.force_login

    def force_login_verified(self, user, backend=None):
        force_login(self, user, backend)
        if needs_second_factor(user):
            from django_otp.plugins.otp_totp.models import TOTPDevice

            device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
            device = device or TOTPDevice.objects.create(user=user, name="test", confirmed=True)
            session = self.session
            session[DEVICE_ID_SESSION_KEY] = device.persistent_id
            session.save()

    monkeypatch.setattr(Client, "force_login", force_login_verified)
