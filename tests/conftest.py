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


def login(client, user):
    client.force_login(user)
    return client


@pytest.fixture(scope="session")
def pg():
    """A real PostgreSQL server (TEST_DATABASE_URL or a throwaway cluster)."""
    try:
        with postgres_server() as server:
            yield server
    except PostgresUnavailable as exc:
        pytest.exit(f"opsconsole tests: {exc}", returncode=1)
