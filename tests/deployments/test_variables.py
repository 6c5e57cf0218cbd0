"""Environment variables: templates and starting values, .env and provider imports, and drift
noticed by keyed hash, with no value in any incident or page."""

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from alerts.models import Incident
from deployments.models import (
    Environment,
    EnvironmentVariable,
    TemplateDefault,
    TemplateVariable,
    VariableTemplate,
)
from deployments.tasks import check_variable_drift
from deployments.variables import DotenvError, parse_dotenv
from opsconsole.fields import reveal
from tests.conftest import login

DOTENV = b"""# shorts-api, production
export DATABASE_URL="postgres://app:s3cr3t@db.internal:5432/shorts"
REDIS_URL='redis://cache:6379/0'   # the cache
SENTRY_DSN=https://key@o1.ingest.sentry.io/42
  export   LOG_LEVEL = info
EMPTY=
QUOTED_HASH="not # a comment"
MULTILINE="line one
line two"
"""


@pytest.fixture
def env(db):
    env = Environment.objects.create(name="production", provider="local",
                                     provider_config={"port": 18980})  # fmt: skip
    env.backend.varsfile.unlink(missing_ok=True)
    yield env
    env.backend.varsfile.unlink(missing_ok=True)


def values(env) -> dict[str, str]:
    return {v.name: reveal(v.value) for v in env.variables.all()}


def test_a_dotenv_file_with_comments_quotes_and_export_prefixes():
    assert parse_dotenv(DOTENV) == {
        "DATABASE_URL": "postgres://app:s3cr3t@db.internal:5432/shorts",
        "REDIS_URL": "redis://cache:6379/0",
        "SENTRY_DSN": "https://key@o1.ingest.sentry.io/42",
        "LOG_LEVEL": "info",
        "EMPTY": "",
        "QUOTED_HASH": "not # a comment",
        "MULTILINE": "line one\nline two",
    }
    assert parse_dotenv(b"\xef\xbb\xbfA=${B}\n") == {"A": "${B}"}, "BOM dropped, no interpolation"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe\x00A", "not UTF-8"),
        (b"A=1\nJUST_A_NAME\n", "line 2 has a name but no value (NAME=value)"),
        (b"# only a comment\n", "no variables found"),
        (b"1BAD=x\n", "line 1: not a variable name"),
        (b"A=1\nB C=2\n", "line 2 is not NAME=value"),
        (b"A=" + b"x" * 300_000, "over 256 KB"),
    ],
)
def test_a_file_that_is_not_a_dotenv_says_why(data, message):
    with pytest.raises(DotenvError, match=re.escape(message)):
        parse_dotenv(data)


@pytest.mark.parametrize(
    "stray", [b"sk_live_51Habc/xyz+123", b"ghp_R3alTok3n", b"MIIEpAIBAAKCAQEA3"]
)
def test_a_stray_line_is_named_by_its_number_never_its_text(stray):
    with pytest.raises(DotenvError) as error:
        parse_dotenv(b"A=1\n" + stray + b"\n")
    assert str(error.value).startswith("line 2") and stray.decode()[:6] not in str(error.value)


def upload(client, env, data: bytes):
    return client.post(
        f"/admin/deployments/environment/{env.pk}/variables/dotenv/",
        {"dotenv": SimpleUploadedFile(".env", data)},
        follow=True,
    )


def test_an_approver_imports_a_dotenv_file_and_never_sees_a_value_again(client, env, bob):
    EnvironmentVariable.objects.create(environment=env, name="LOG_LEVEL", value="debug")
    login(client, bob)
    page = upload(client, env, DOTENV).content.decode()
    assert "Imported 7 variable(s) from the file: DATABASE_URL, EMPTY, LOG_LEVEL" in page
    assert values(env)["DATABASE_URL"] == "postgres://app:s3cr3t@db.internal:5432/shorts"
    assert values(env)["LOG_LEVEL"] == "info"
    page = client.get(f"/admin/deployments/environment/{env.pk}/change/").content.decode()
    assert "s3cr3t" not in page and "o1.ingest" not in page
    history = client.get(f"/admin/deployments/environment/{env.pk}/history/").content.decode()
    assert "Imported 7 variable(s)" in history and "s3cr3t" not in history
    again = upload(client, env, DOTENV).content.decode()
    assert "Imported 0 variable(s)" in again, "the same file changes nothing"


def test_a_bad_file_imports_nothing_and_says_why(client, env, bob):
    login(client, bob)
    page = upload(client, env, b"DATABASE_URL=x\nnot a line\n").content.decode()
    assert "Line 2 is not NAME=value" in page
    assert values(env) == {}


@pytest.mark.parametrize("person", ["carol", "alice"])
def test_viewers_and_operators_cannot_import(client, env, person, request):
    login(client, request.getfixturevalue(person))
    response = upload(client, env, b"A=1\n")
    assert response.status_code in (200, 403)
    assert values(env) == {}
    assert client.post(
        f"/admin/deployments/environment/{env.pk}/variables/provider/"
    ).status_code in (302, 403)
    assert values(env) == {}


def test_import_from_the_provider_takes_its_values_and_its_state(client, env, bob):
    env.backend.set_variables({"DATABASE_URL": "postgres://db/x", "API_KEY": "k-123"})
    login(client, bob)
    page = client.post(f"/admin/deployments/environment/{env.pk}/variables/provider/",
                       follow=True).content.decode()  # fmt: skip
    assert "Imported 2 variable(s) from Local sample service: API_KEY, DATABASE_URL" in page
    assert values(env) == {"DATABASE_URL": "postgres://db/x", "API_KEY": "k-123"}
    env.refresh_from_db()
    assert set(env.provider_digests["names"]) == {"DATABASE_URL", "API_KEY"}
    assert "k-123" not in str(env.provider_digests)


def test_the_template_gives_starting_values_per_environment(client, env, bob):
    staging = Environment.objects.create(name="staging", provider="local",
                                         provider_config={"port": 18990})  # fmt: skip
    template = VariableTemplate.objects.create(name="shorts-api")
    TemplateVariable.objects.create(template=template, name="LOG_LEVEL", kind="enum",
                                    rule="debug,info")  # fmt: skip
    TemplateVariable.objects.create(template=template, name="WORKERS", kind="number")
    TemplateDefault.objects.create(template=template, name="LOG_LEVEL", value="info")
    TemplateDefault.objects.create(template=template, name="LOG_LEVEL", environment=staging,
                                   value="debug")  # fmt: skip
    TemplateDefault.objects.create(template=template, name="WORKERS", value="4")
    for e in (env, staging):
        e.variable_template = template
        e.save()
    EnvironmentVariable.objects.create(environment=env, name="WORKERS", value="8")
    login(client, bob)
    for e in (env, staging):
        client.post(f"/admin/deployments/environment/{e.pk}/variables/defaults/")
    assert values(env) == {"LOG_LEVEL": "info", "WORKERS": "8"}, "a set value stays"
    assert values(staging) == {"LOG_LEVEL": "debug", "WORKERS": "4"}
    assert env.required_names() == {"LOG_LEVEL", "WORKERS"}


def test_drift_raises_an_incident_naming_the_variable_never_its_value(client, env, bob, carol):
    env.backend.set_variables({"DATABASE_URL": "postgres://db/x", "API_KEY": "old-key"})
    assert check_variable_drift() == {"production": "no drift"}, "the first look is the baseline"
    assert not Incident.objects.exists()

    env.backend.set_variables({"API_KEY": "rotated-by-hand", "DEBUG": "1"})
    assert check_variable_drift() == {"production": "API_KEY changed, DEBUG added"}
    incident = Incident.objects.get(fingerprint=f"variables-drift:{env.pk}")
    assert incident.title == (
        "Variables of production changed on Local sample service behind the console's back: "
        "API_KEY changed, DEBUG added"
    )
    assert incident.details["changed"] == ["API_KEY"] and incident.component == "production"
    assert "rotated" not in str(incident.details) + incident.title

    login(client, carol)
    page = client.get(f"/admin/deployments/environment/{env.pk}/change/").content.decode()
    assert "Changed on the provider behind the console" in page
    assert re.search(r"Changed: API_KEY</li><li>Added: DEBUG", page)
    assert "rotated" not in page and "old-key" not in page
    listing = client.get("/admin/deployments/environment/").content.decode()
    assert "drift: API_KEY, DEBUG" in listing

    # Keeping the provider's values ends the drift and the incident.
    login(client, bob)
    client.post(f"/admin/deployments/environment/{env.pk}/variables/provider/")
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert check_variable_drift() == {"production": "no drift"}


def test_a_sync_puts_the_consoles_values_back_and_ends_the_drift(env, alice):
    from tests.helpers import run_queued

    env.two_person_rule = False
    env.save()
    env.backend.set_variables({"API_KEY": "console-value"})
    env.check_drift()
    EnvironmentVariable.objects.create(environment=env, name="API_KEY", value="console-value")
    env.backend.set_variables({"API_KEY": "changed-by-hand"})
    assert env.check_drift().changed == ["API_KEY"]
    env.request_variable_sync(alice)
    run_queued()
    assert env.backend.variables() == {"API_KEY": "console-value"}
    assert not env.check_drift()
    assert Incident.objects.get().status == "resolved"


def test_a_new_secret_key_takes_a_new_baseline_instead_of_calling_everything_changed(env, settings):
    env.backend.set_variables({"A": "1"})
    env.check_drift()
    settings.SECRET_KEY = "another-secret-key-for-this-test-0123456789"
    assert not env.check_drift()
    assert not Incident.objects.exists()


def test_no_value_reaches_any_page_when_variables_drift(client, env, people_for_crawl):
    """The secret-canary crawler, with the provider's values as canaries."""
    from tests.security.test_secret_canaries import admin_pages, routed_pages

    canaries = {f"canary{i}x{n}" for i, n in enumerate("abcd")}
    first, second, third, fourth = sorted(canaries)
    env.backend.set_variables({"DATABASE_URL": first, "API_KEY": second})
    EnvironmentVariable.objects.create(environment=env, name="API_KEY", value=second)
    env.check_drift()
    env.backend.set_variables({"API_KEY": third, "NEW_ONE": fourth})
    env.check_drift()
    assert Incident.objects.get().is_open
    pattern = re.compile("|".join(canaries))
    client.raise_request_exception = False
    leaks = []
    for user in people_for_crawl:
        client.force_login(user)
        for url in sorted({*admin_pages(), *routed_pages()}):
            response = client.get(url)
            body = b"".join(response.streaming_content) if response.streaming else response.content
            if pattern.search(body.decode(errors="replace")):
                leaks.append(f"{user} {url}")
    assert not leaks, leaks


@pytest.fixture
def people_for_crawl(alice, bob, carol, django_user_model):
    return [carol, alice, bob, django_user_model.objects.create_superuser("root", password="x")]
