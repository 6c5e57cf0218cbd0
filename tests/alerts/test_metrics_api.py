"""POST /api/metrics: bearer token, all-or-nothing batches, each bad entry named."""

import io
import json
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from alerts.models import MetricSample
from opsconsole.models import ApiToken


def post(client, body, token, raw=None):
    return client.post(
        "/api/metrics",
        data=raw if raw is not None else json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def test_create_api_token_prints_it_once_and_stores_only_a_hash(db):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_token", "ci", "--scope", "metrics:write", stdout=out, stderr=err)
    token = out.getvalue().strip()
    row = ApiToken.objects.get(name="ci")
    assert token.startswith("oc_") and token not in (row.token_hash, row.prefix)
    assert row.prefix == token[:8]
    assert "cannot be shown again" in err.getvalue()
    assert ApiToken.authenticate(f"Bearer {token}") == row


def test_a_good_batch_is_stored(client, api_token):
    now = timezone.now()
    response = post(
        client,
        [
            {"key": "api.error_rate", "value": 2.5, "labels": {"service": "api"}},
            {"key": "api.error_rate", "value": 3, "observed_at": now.isoformat()},
            {"key": "system.high_cpu", "value": 50, "observed_at": now.timestamp() - 60},
        ],
        api_token,
    )
    assert response.status_code == 202, response.json()
    assert response.json() == {"accepted": 3}
    sample = MetricSample.objects.get(labels_key="service=api")
    assert (sample.key, sample.value, sample.labels) == ("api.error_rate", 2.5, {"service": "api"})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"value": 1}, "missing key"),
        ({"key": "x", "value": "high"}, "value must be a number"),
        ({"key": "x", "value": True}, "value must be a number"),
        ({"key": "x", "value": 1, "colour": "red"}, "unknown field(s): colour"),
        ({"key": "x", "value": 1, "labels": {f"l{i}": "v" for i in range(11)}}, "too many labels"),
        ({"key": "x", "value": 1, "labels": {"bad-name": "v"}}, "is not a valid identifier"),
        ({"key": "x", "value": 1, "observed_at": "yesterday"}, "ISO 8601 or Unix seconds"),
        ("not an object", "a sample must be a JSON object"),
    ],
)
def test_one_bad_sample_refuses_the_batch_and_names_it(client, api_token, entry, message):
    body = [{"key": "ok", "value": 1}, entry, {"key": "ok", "value": 2}]
    response = post(client, body, api_token)
    assert response.status_code == 400
    data = response.json()
    assert [item["index"] for item in data["invalid"]] == [1]
    assert any(message in e for e in data["invalid"][0]["errors"]), data
    assert MetricSample.objects.count() == 0


def test_nan_infinity_and_the_far_future_are_refused(client, api_token):
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    raw = (
        '[{"key": "a", "value": NaN}, {"key": "b", "value": Infinity},'
        f' {{"key": "c", "value": 1, "observed_at": "{future}"}}, {{"key": "d", "value": 4}}]'
    )
    response = post(client, None, api_token, raw=raw)
    assert response.status_code == 400
    invalid = {item["index"]: item["errors"] for item in response.json()["invalid"]}
    assert set(invalid) == {0, 1, 2}
    assert "finite" in invalid[0][0] and "finite" in invalid[1][0]
    assert "future" in invalid[2][0]
    assert MetricSample.objects.count() == 0


def test_more_than_1000_samples_is_refused(client, api_token):
    response = post(client, [{"key": "k", "value": i} for i in range(1001)], api_token)
    assert response.status_code == 400
    assert "at most 1000" in response.json()["error"]


def test_malformed_json_and_wrong_shapes_are_400(client, api_token):
    assert post(client, None, api_token, raw="{not json").status_code == 400
    response = post(client, {"key": "x", "value": 1}, api_token)
    assert response.status_code == 400
    assert response.json()["error"] == "the body must be a JSON list of samples"


def test_wrong_missing_or_revoked_token_is_401(client, api_token):
    assert post(client, [{"key": "k", "value": 1}], "oc_wrong").status_code == 401
    assert client.post("/api/metrics", "[]", content_type="application/json").status_code == 401
    ApiToken.objects.get().revoke()
    response = post(client, [{"key": "k", "value": 1}], api_token)
    assert response.status_code == 401
    assert response.json() == {"error": "missing, wrong, expired or revoked bearer token"}


def test_a_body_over_1mb_is_413(client, api_token):
    raw = json.dumps([{"key": "k" * 100, "value": 1, "labels": {"a": "x" * 150}}] * 4000)
    assert len(raw) > 1024 * 1024
    response = post(client, None, api_token, raw=raw)
    assert response.status_code == 413
    assert MetricSample.objects.count() == 0


def test_samples_past_retention_are_pruned(db, settings):
    settings.ALERTS_SAMPLE_RETENTION_DAYS = 30
    now = timezone.now()
    MetricSample.objects.create(key="k", value=1, observed_at=now - timedelta(days=31))
    MetricSample.objects.create(key="k", value=2, observed_at=now - timedelta(days=29))
    assert MetricSample.prune(now) == 1
    assert list(MetricSample.objects.values_list("value", flat=True)) == [2]


def test_tokens_are_revoked_from_the_admin(admin_client, api_token, client):
    row = ApiToken.objects.get()
    page = admin_client.get("/admin/opsconsole/apitoken/").content.decode()
    assert row.prefix in page and api_token not in page
    admin_client.post(
        "/admin/opsconsole/apitoken/", {"action": "revoke", "_selected_action": [row.pk]}
    )
    row.refresh_from_db()
    assert row.revoked_at is not None
    assert post(client, [{"key": "k", "value": 1}], api_token).status_code == 401
