"""No decrypted secret reaches any page, JSON body, CSV or log line, for any role.

Every encrypted field of every model is set to its own canary; then each role
(viewer, operator, approver, superuser) opens every admin changelist, change,
history and delete page, every other page and JSON endpoint the console
routes (admin custom views included), and no canary may appear anywhere.
New encrypted fields are picked up by themselves; a new model with encrypted
fields needs a maker below, and the test says so.
"""

import logging
import re
import uuid

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.urls import URLPattern, URLResolver, get_resolver

from opsconsole.fields import encrypted_fields


def make_records():
    from django.contrib.auth.models import User

    from alerts.models import Channel, Incident, MetricSource
    from backups.models import Backup, BackupKey, DatabaseTarget, RestoreRequest, StorageLocation
    from deployments.models import Deployment, Environment, EnvironmentVariable, RollbackRequest
    from dr.models import FailoverAction, FailoverRun, ServiceCheck
    from tests.testapp.models import Vault

    env = Environment.objects.create(name="production", provider="local",
                                     provider_config={"port": 18990}, base_url="http://127.0.0.1:18990")  # fmt: skip
    EnvironmentVariable.objects.create(environment=env, name="DATABASE_URL", value="x")
    from deployments.models import (
        DeployApproval,
        GateCheck,
        GitHubApp,
        TemplateDefault,
        TemplateVariable,
        VariableTemplate,
    )  # fmt: skip

    template = VariableTemplate.objects.create(name="shorts-api")
    TemplateVariable.objects.create(template=template, name="DATABASE_URL", kind="url")
    TemplateDefault.objects.create(template=template, name="DATABASE_URL", value="x")
    env.variable_template = template
    env.variables_drift = {"changed": ["DATABASE_URL"], "added": [], "removed": []}
    env.save()
    approval = DeployApproval.objects.create(environment=env, version="v3")
    github = GitHubApp.objects.create(name="opsconsole", app_id="Iv23x", private_key="x",
                                      webhook_secret="x")  # fmt: skip
    GateCheck.objects.create(environment=env, version="v3", asked_by="GitHub", answer="waiting",
                             approval=approval, github_app=github,
                             reasons=[{"code": "approval_pending", "message": "waiting"}])  # fmt: skip
    v1 = Deployment.objects.create(
        environment=env, external_id="d1", version="v1", status="succeeded"
    )
    Deployment.objects.create(environment=env, external_id="d2", version="v2", status="failed")
    RollbackRequest.objects.create(environment=env, target_deployment=v1, reason="canary test")
    target = DatabaseTarget.objects.create(name="shop", engine="postgresql",
                                           dsn="postgresql://u:p@127.0.0.1:1/shop")  # fmt: skip
    storage = StorageLocation.objects.create(name="s3", kind="s3", config={"bucket": "b"})
    BackupKey.current()
    backup = Backup.objects.create(target=target, storage=storage, status="succeeded",
                                   sha256="0" * 64, bytes_stored=1)  # fmt: skip
    RestoreRequest.objects.create(backup=backup, new_database="shop_restore_x")
    Channel.objects.create(name="slack", kind="slack", config={})
    MetricSource.objects.create(name="prom", kind="prometheus", metric_key="m",
                                config={"url": "http://127.0.0.1:9/", "query": "up"})  # fmt: skip
    action = FailoverAction.objects.create(name="flip", kind="webhook",
                                           config={"url": "http://127.0.0.1:9/"})  # fmt: skip
    FailoverRun.objects.create(action=action, reason="canary test")
    ServiceCheck.objects.create(name="db", kind="postgres", config={})
    Vault.objects.create(name="v", secret="x")
    Incident.objects.create(
        fingerprint="f", source="test", title="Something broke", priority="high"
    )
    from opsconsole.models import SettingChange

    SettingChange.file(User.objects.create_user("requester", is_staff=True), target,
                       {"dsn": ("hmac:old", "hmac:new")}, {"dsn": "x"})  # fmt: skip


def set_canaries() -> dict[str, str]:
    canaries = {}
    for field in encrypted_fields():
        model = field.model
        assert model.objects.exists(), (
            f"{model._meta.label} has encrypted fields but no record here: add it to make_records()"
        )
        for pk in model.objects.values_list("pk", flat=True):
            canary = f"canary{uuid.uuid4().hex}"
            canaries[canary] = f"{model._meta.label}.{field.name}#{pk}"
            model.objects.filter(pk=pk).update(**{field.name: canary})
    return canaries


def admin_pages():
    """Every changelist, add, change, history and delete page of every registered model."""
    for model in admin.site._registry:
        info = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        yield info
        for pk in model._default_manager.values_list("pk", flat=True)[:3]:
            for suffix in ("change/", "history/", "delete/"):
                yield f"{info}{pk}/{suffix}"


def routed_pages():
    """Every other GET route of the console, with path arguments filled from the records."""

    def walk(patterns, prefix=""):
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, route)
            elif isinstance(p, URLPattern):
                yield route

    samples = {}
    for model in admin.site._registry:
        pks = list(model._default_manager.values_list("pk", flat=True)[:1])
        if pks:
            samples[f"{model._meta.app_label}/{model._meta.model_name}"] = str(pks[0])
    for route in set(walk(get_resolver().url_patterns)):
        route = route.lstrip("^").rstrip("$").replace("\\Z", "")
        if "(?P<" in route or route.startswith("admin/r/"):
            continue
        if "<" not in route:
            yield "/" + route
            continue
        owner = next((k for k in samples if route.startswith(f"admin/{k}/")), None)
        if owner is None:
            continue
        filled = re.sub(r"<(?:path|int|str):\w+>", samples[owner], route, count=1)
        if "<" not in filled:
            yield "/" + filled


@pytest.fixture
def people(db, django_user_model):
    users = {}
    for name, role in (("carol", "Viewer"), ("alice", "Operator"), ("bob", "Approver")):
        user = django_user_model.objects.create_user(name, password="x", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        users[name] = user
    users["root"] = django_user_model.objects.create_superuser("root", password="x")
    return users


def test_no_canary_reaches_any_page_json_or_log(client, people, settings, caplog):
    settings.DR_STATUS_PAGE_ENABLED = True
    make_records()
    canaries = set_canaries()
    assert {c.split("#")[0] for c in canaries.values()} == {
        f"{f.model._meta.label}.{f.name}" for f in encrypted_fields()
    }
    pattern = re.compile("|".join(canaries))
    leaks, visited = [], 0
    caplog.set_level(logging.DEBUG)
    client.raise_request_exception = False
    for name, user in people.items():
        client.force_login(user)
        for url in sorted({*admin_pages(), *routed_pages()}):
            response = client.get(url)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            visited += 1
            if found := pattern.findall(body.decode(errors="replace")):
                leaks.append(f"{name} {url} {response.status_code}: {canaries[found[0]]}")
    assert visited > 200, "the crawl reached the pages"
    assert not leaks, "\n".join(leaks)
    logged = pattern.findall(caplog.text)
    assert not logged, [canaries[c] for c in logged]


def test_a_viewer_sees_whether_a_secret_is_set_and_who_changed_it(client, people):
    from backups.models import DatabaseTarget

    client.force_login(people["bob"])
    response = client.post("/admin/backups/databasetarget/add/", {
        "name": "shop", "engine": "postgresql", "dsn": "postgresql://u:hunter2@db/shop",
        "exclude_table_data": "[]", "required_tables": "[]", "check_queries": "[]",
        "production": "on",
    })  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    target = DatabaseTarget.objects.get(name="shop")
    assert target.dsn.reveal() == "postgresql://u:hunter2@db/shop"
    assert str(target.dsn) == "set" and "hunter2" not in repr(target.dsn)
    client.force_login(people["carol"])
    page = client.get(f"/admin/backups/databasetarget/{target.pk}/change/").content.decode()
    assert "hunter2" not in page
    assert re.search(r"set, changed \d{4}-\d\d-\d\d \d\d:\d\d UTC by bob", page)
