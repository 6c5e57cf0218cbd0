"""Each channel against a real local peer, through its real client library."""

import base64
import hashlib
import hmac
import json
import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from werkzeug import Response

from alerts import incidents
from alerts.channels.twilio import sms_text
from alerts.models import Channel, EscalationLevel, EscalationPolicy, Incident, Notification
from alerts.notify import deliver, deliver_due, incident_from_token
from tests.alerts.conftest import T0, deliver_all

ACCOUNT = "AC" + "0" * 31 + "1"
PD_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


@pytest.fixture
def route(db):
    """Make `channel` the only receiver of level 0."""
    Channel.objects.update(enabled=False)
    EscalationPolicy.objects.update(is_default=False)
    policy = EscalationPolicy.objects.create(name="only", is_default=True)
    level = EscalationLevel.objects.create(policy=policy, position=0, delay_minutes=0)

    def _route(*channels):
        level.channels.set(channels)
        return channels[0]

    return _route


def fire(priority="critical", fingerprint="api:down", now=T0):
    return incidents.raise_incident(
        source="test", fingerprint=fingerprint, title="API is down", priority=priority,
        component="api", details={"error_rate": "37%"}, now=now,
    )  # fmt: skip


def make(kind, *, config=None, secret="", priorities=None, name=None):
    channel = Channel(name=name or kind, kind=kind, config=config or {}, secret=secret,
                      priorities=priorities or [])  # fmt: skip
    channel.full_clean()
    channel.save()
    return channel


# --- Slack -------------------------------------------------------------------------


def test_slack_gets_colour_fields_and_the_ack_link(route, httpserver):
    url = httpserver.url_for("/services/T000/B000/XXXX")
    httpserver.expect_request("/services/T000/B000/XXXX", method="POST").respond_with_data("ok")
    route(make("slack", secret=url))
    incident = fire()
    assert deliver_all(T0) == ["sent"]
    body = json.loads(httpserver.log[0][0].data)
    attachment = body["attachments"][0]
    assert body["text"] == "[FIRING] [CRITICAL] API is down"
    assert attachment["color"] == "#d32f2f"
    fields = {f["title"]: f["value"] for f in attachment["fields"]}
    assert fields["Priority"] == "critical" and fields["Component"] == "api"
    assert "error_rate: 37%" in fields["Details"] and "Time" in fields
    token = attachment["actions"][0]["url"].split("/alerts/ack/")[1].rstrip("/")
    assert incident_from_token(token) == incident
    n = Notification.objects.get()
    assert (n.status, n.http_status) == ("sent", 200)


def test_slack_404_is_permanent_flags_the_channel_and_tells_the_others(route, httpserver):
    httpserver.expect_request("/services/gone").respond_with_data("no_service", status=404)
    slack = make("slack", secret=httpserver.url_for("/services/gone"))
    backup = make("log", name="backup log")
    route(slack, backup)
    fire()
    deliver_all(T0)
    slack.refresh_from_db()
    assert slack.flagged_at is not None and "HTTP 404" in slack.flagged_reason
    failed = Notification.objects.get(channel=slack)
    assert (failed.status, failed.attempts, failed.http_status) == ("failed", 1, 404)
    about_channel = Incident.objects.get(fingerprint=f"channel:{slack.pk}")
    assert about_channel.priority == "high"
    assert list(about_channel.notifications.values_list("channel__name", flat=True)) == [
        "backup log"
    ]
    # Flagged: the next incident skips it.
    fire(fingerprint="other")
    assert not Notification.objects.filter(channel=slack, incident__fingerprint="other").exists()


def test_temporary_failures_retry_with_backoff_then_succeed(route, httpserver):
    httpserver.expect_ordered_request("/hook").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/hook").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "120"}
    )
    httpserver.expect_ordered_request("/hook").respond_with_data("ok")
    route(make("slack", secret=httpserver.url_for("/hook")))
    fire()
    assert deliver_all(T0) == ["retrying"]
    n = Notification.objects.get()
    first_wait = n.next_attempt_at - T0
    assert timedelta(seconds=5) <= first_wait <= timedelta(seconds=30)
    assert deliver(n.pk, now=T0 + timedelta(seconds=1)) is None, "not due yet: nothing sent"
    later = n.next_attempt_at
    assert deliver_all(later) == ["retrying"]
    n.refresh_from_db()
    assert n.next_attempt_at - later >= timedelta(seconds=120), "Retry-After is honoured"
    assert deliver_all(n.next_attempt_at) == ["sent"]
    n.refresh_from_db()
    assert (n.status, n.attempts) == ("sent", 3)
    assert len(httpserver.log) == 3


def test_a_retry_is_the_same_row_due_later_not_a_sleep(route, httpserver):
    httpserver.expect_request("/hook").respond_with_data("busy", status=500)
    route(make("slack", secret=httpserver.url_for("/hook")))
    fire()
    deliver_all(T0)
    n = Notification.objects.get()
    assert deliver_due(T0 + timedelta(seconds=1)) == 0, "not due yet"
    assert len(httpserver.log) == 1
    assert deliver_due(n.next_attempt_at) == 1
    assert len(httpserver.log) == 2


def test_after_the_last_attempt_it_fails_and_raises_an_incident(route, httpserver):
    httpserver.expect_request("/hook").respond_with_data("down", status=502)
    slack = make("slack", secret=httpserver.url_for("/hook"))
    route(slack, make("log", name="backup log"))
    fire()
    now = T0
    for _ in range(10):
        deliver_all(now)
        now += timedelta(hours=1)
    n = Notification.objects.get(channel=slack, incident__fingerprint="api:down")
    assert (n.status, n.attempts) == ("failed", 6)
    slack.refresh_from_db()
    assert slack.flagged_at is None, "temporary failures do not flag"
    assert Incident.objects.filter(fingerprint=f"channel:{slack.pk}").exists()


def test_a_channel_that_never_answers_is_paused_after_a_timeout(route, httpserver, monkeypatch):
    monkeypatch.setattr("opsconsole.http.DEFAULT_TIMEOUT", 0.3)
    hold, finished, calls = threading.Event(), threading.Event(), []

    def hang(request):
        calls.append(request.path)
        hold.wait(10)  # released by the test once both deliveries returned
        finished.set()
        return Response("late")

    httpserver.expect_request("/hang").respond_with_handler(hang)
    hung = make("slack", secret=httpserver.url_for("/hang"))
    route(hung)
    fire()
    fire(fingerprint="second")
    first, second = Notification.objects.order_by("pk")
    try:
        assert deliver(first.pk, now=T0) == "retrying"
        hung.refresh_from_db()
        assert hung.unresponsive_until == T0 + timedelta(seconds=60)
        assert deliver(second.pk, now=T0) == "retrying"
        second.refresh_from_db()
        assert "did not answer recently" in second.error, second.error
        assert calls == ["/hang"], "no second wait on a channel known to hang"
    finally:
        hold.set()
    assert finished.wait(5)  # let the fake peer finish before the next test uses the server


# --- PagerDuty ----------------------------------------------------------------------


def test_pagerduty_trigger_acknowledge_resolve_with_the_fingerprint(
    route, httpserver, settings, alice
):
    settings.OPSCONSOLE_PAGERDUTY_EVENTS_URL = httpserver.url_for("/v2/enqueue")
    httpserver.expect_request("/v2/enqueue", method="POST").respond_with_json(
        {"status": "success"}, status=202
    )
    route(make("pagerduty", secret=PD_KEY))
    incident = fire(priority="critical")
    deliver_all(T0)
    incidents.acknowledge(incident, alice, now=T0 + timedelta(minutes=1))
    deliver_all(T0 + timedelta(minutes=2))
    incidents.resolve_incident("api:down", now=T0 + timedelta(minutes=3))
    deliver_all(T0 + timedelta(minutes=4))
    bodies = [json.loads(entry[0].data) for entry in httpserver.log]
    assert [b["event_action"] for b in bodies] == ["trigger", "acknowledge", "resolve"]
    assert {b["dedup_key"] for b in bodies} == {"api:down"}
    assert {b["routing_key"] for b in bodies} == {PD_KEY}
    assert bodies[0]["payload"] == {
        "summary": "API is down", "source": "api", "severity": "critical", "component": "api",
        "custom_details": {"error_rate": "37%"},
    }  # fmt: skip
    assert Notification.objects.filter(status="sent", http_status=202).count() == 3


@pytest.mark.parametrize(
    ("priority", "severity"), [("high", "error"), ("medium", "warning"), ("low", "info")]
)
def test_pagerduty_severity_mapping(route, httpserver, settings, priority, severity):
    settings.OPSCONSOLE_PAGERDUTY_EVENTS_URL = httpserver.url_for("/v2/enqueue")
    httpserver.expect_request("/v2/enqueue").respond_with_json({}, status=202)
    route(make("pagerduty", secret=PD_KEY, priorities=[priority]))
    fire(priority=priority)
    deliver_all(T0)
    assert json.loads(httpserver.log[0][0].data)["payload"]["severity"] == severity


def test_pagerduty_400_is_permanent(route, httpserver, settings):
    settings.OPSCONSOLE_PAGERDUTY_EVENTS_URL = httpserver.url_for("/v2/enqueue")
    httpserver.expect_request("/v2/enqueue").respond_with_json(
        {"status": "invalid event"}, status=400
    )
    pd = route(make("pagerduty", secret=PD_KEY))
    fire()
    assert deliver_all(T0) == ["failed"]
    pd.refresh_from_db()
    assert pd.flagged_at is not None


# --- generic webhook -------------------------------------------------------------------


def test_webhook_is_signed_and_verifiable(route, httpserver):
    httpserver.expect_request("/receiver", method="POST").respond_with_data("", status=204)
    route(make("webhook", config={"url": httpserver.url_for("/receiver")}, secret="shared-secret"))
    fire()
    assert deliver_all(T0) == ["sent"]
    request = httpserver.log[0][0]
    ts, signature = (
        request.headers["X-Opsconsole-Timestamp"],
        request.headers["X-Opsconsole-Signature"],
    )
    expected = hmac.new(
        b"shared-secret", ts.encode() + b"." + request.data, hashlib.sha256
    ).hexdigest()
    assert signature == f"sha256={expected}"
    body = json.loads(request.data)
    assert (body["event"], body["fingerprint"], body["priority"]) == (
        "firing",
        "api:down",
        "critical",
    )


# --- Twilio ------------------------------------------------------------------------------


def twilio_fake(httpserver, kind="Messages", code=None):
    calls = []

    def handler(request):
        calls.append(request)
        if code:
            return Response(json.dumps({"code": code, "message": "The 'To' number is not valid.",
                                        "status": 400}), status=400, content_type="application/json")  # fmt: skip
        form = request.form
        return Response(
            json.dumps({"sid": f"SM{len(calls):032d}", "status": "queued", "to": form["To"],
                        "from": form["From"], "body": form.get("Body", "")}),
            status=201, content_type="application/json",
        )  # fmt: skip

    httpserver.expect_request(
        f"/2010-04-01/Accounts/{ACCOUNT}/{kind}.json", method="POST"
    ).respond_with_handler(handler)
    return calls


@pytest.fixture
def twilio_base(settings, httpserver):
    settings.OPSCONSOLE_TWILIO_BASE_URL = httpserver.url_for("/")


def test_sms_one_message_per_number_with_basic_auth(route, httpserver, twilio_base):
    calls = twilio_fake(httpserver)
    route(make("sms", config={"account_sid": ACCOUNT, "from_number": "+15005550006",
                              "to_numbers": ["+14155550100", "+447700900123"]}, secret="auth-token"))  # fmt: skip
    fire()
    assert deliver_all(T0) == ["sent"]
    assert [c.form["To"] for c in calls] == ["+14155550100", "+447700900123"]
    assert {c.form["From"] for c in calls} == {"+15005550006"}
    assert calls[0].form["Body"].startswith("[FIRING] [CRITICAL] API is down")
    assert len(calls[0].form["Body"]) <= 160
    expected = "Basic " + base64.b64encode(f"{ACCOUNT}:auth-token".encode()).decode()
    assert calls[0].headers["Authorization"] == expected
    assert Notification.objects.get().provider_code == f"SM{1:032d},SM{2:032d}"


def test_twilio_21211_is_permanent_and_flags_the_channel(route, httpserver, twilio_base):
    twilio_fake(httpserver, code=21211)
    sms = route(make("sms", config={"account_sid": ACCOUNT, "from_number": "+15005550006",
                                    "to_numbers": ["+14155550100"]}, secret="auth-token"))  # fmt: skip
    fire()
    assert deliver_all(T0) == ["failed"]
    n = Notification.objects.get(channel=sms)
    assert (n.provider_code, n.http_status) == ("21211", 400)
    sms.refresh_from_db()
    assert sms.flagged_at is not None


def test_voice_call_speaks_a_short_message(route, httpserver, twilio_base):
    calls = twilio_fake(httpserver, kind="Calls")
    route(make("voice", config={"account_sid": ACCOUNT, "from_number": "+15005550006",
                                "to_numbers": ["+14155550100"]}, secret="auth-token"))  # fmt: skip
    fire()
    assert deliver_all(T0) == ["sent"]
    twiml = calls[0].form["Twiml"]
    assert twiml.startswith("<Response><Say") and "API is down" in twiml


def test_sms_text_keeps_to_one_segment():
    long = "Disk almost full on the primary database server " * 10
    text = sms_text(long)
    assert len(text) <= 160 and text.endswith("...") and not text.endswith(" ...")
    assert sms_text("It\u2019s \u201cdown\u201d \u2013 now\u2026") == 'It\'s "down" - now...'
    assert len(sms_text("Ошибка " * 30)) <= 70, "non-GSM text: a UCS-2 segment is 70 characters"
    # [ and ] are GSM-7 (its extension table, two places each): the headline stays whole.
    link = "https://ops.example.com/a/" + "x" * 60
    page = f"[FIRING] [CRITICAL] API down: {link}"
    assert sms_text(page) == page
    brackets = sms_text("[x] " * 60)
    places = sum(2 if ch in "[]" else 1 for ch in brackets)
    assert brackets.endswith("...") and 150 <= places <= 160, places


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"account_sid": ACCOUNT, "from_number": "+15005550006", "to_numbers": ["0612345678"]},
            "E.164",
        ),
        (
            {"account_sid": "nope", "from_number": "+15005550006", "to_numbers": ["+14155550100"]},
            "account_sid",
        ),
        (
            {"from_number": "+15005550006", "to_numbers": ["+14155550100"]},
            "Missing configuration: account_sid",
        ),
    ],
)
def test_sms_config_is_validated_on_save(db, config, message):
    with pytest.raises(ValidationError, match=message):
        make("sms", config=config, secret="token")


@pytest.mark.parametrize(
    ("kind", "config", "secret", "message"),
    [
        ("slack", {}, "not a url", "Slack incoming webhook URL"),
        ("pagerduty", {}, "short", "32-character"),
        ("email", {"to": ["not-an-address"]}, "", "is not an email address"),
        ("webhook", {"url": "ftp://x"}, "s", r"http\(s\) address"),
        ("webhook", {"url": "https://x.example"}, "", "Set the secret"),
    ],
)
def test_bad_channel_config_is_refused_with_a_clear_message(db, kind, config, secret, message):
    with pytest.raises(ValidationError, match=message):
        make(kind, config=config, secret=secret)


# --- email ----------------------------------------------------------------------------


def test_email_sends_text_and_html(route, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    route(make("email", config={"to": ["oncall@example.com"]}))
    fire()
    assert deliver_all(T0) == ["sent"]
    (message,) = mail.outbox
    assert message.subject == "[FIRING] [CRITICAL] API is down"
    assert message.to == ["oncall@example.com"]
    assert "Component: api" in message.body and "Acknowledge:" in message.body
    html, mime = message.alternatives[0]
    assert mime == "text/html" and "Acknowledge this incident" in html


def test_channel_priorities_filter_what_it_receives(route, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    email = make("email", config={"to": ["oncall@example.com"]})
    assert email.priorities == ["critical", "high"], "the kind's defaults"
    route(email)
    fire(priority="medium")
    assert not Notification.objects.exists()


def test_send_test_notification_from_the_admin(
    route, alice, client, django_capture_on_commit_callbacks
):
    from django_q.models import OrmQ

    from tests.conftest import login

    channel = make("log", name="ops log")
    login(client, alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/admin/alerts/channel/", {"action": "send_test", "_selected_action": [channel.pk]}
        )
    assert response.status_code == 302
    n = Notification.objects.get(channel=channel)
    assert (n.event, n.status) == ("test", "queued")
    assert not OrmQ.objects.exists(), "delivery is the alert path's, not a jobs worker's"
    assert deliver_due() == 1
    n.refresh_from_db()
    assert n.status == "sent"
    channel.refresh_from_db()
    assert channel.last_status == "sent"


def test_the_admin_never_shows_a_channel_secret(route, admin_client, httpserver):
    url = httpserver.url_for("/services/T1/B1/very-secret-path")
    channel = make("slack", secret=url)
    page = admin_client.get(f"/admin/alerts/channel/{channel.pk}/change/").content.decode()
    assert "very-secret-path" not in page and "A value is stored" in page


def test_a_send_behind_a_hanging_one_waits_instead_of_blocking_a_worker(route, httpserver):
    route(make("slack", secret=httpserver.url_for("/hook")))
    fire()
    fire(fingerprint="second")
    first, second = Notification.objects.order_by("pk")
    # The first is in flight for 5 s already (a worker is stuck on it).
    Notification.objects.filter(pk=first.pk).update(
        status="sending", claimed_at=T0 - timedelta(seconds=5)
    )
    assert deliver(second.pk, now=T0) == "retrying"
    second.refresh_from_db()
    assert second.attempts == 0 and second.next_attempt_at == T0 + timedelta(seconds=15)
    assert "hanging" in second.error
    assert httpserver.log == []


@pytest.mark.django_db(transaction=True)
def test_a_slow_send_is_handed_off_so_the_worker_moves_on(route, httpserver, monkeypatch):
    import time

    monkeypatch.setattr("alerts.notify.HANDOFF_SECONDS", 0.2)
    release = threading.Event()
    # The peer answers only once the test lets it, after deliver() has returned: a
    # worker that waited for it would hang here until the peer gave up (10 s) and
    # then see "sent", not "sending".
    httpserver.expect_request("/slow").respond_with_handler(
        lambda r: (release.wait(10), Response("ok"))[1]
    )
    route(make("slack", secret=httpserver.url_for("/slow")))
    fire()
    n = Notification.objects.get()
    try:
        assert deliver(n.pk, now=T0) == "sending", "the worker did not wait for the slow peer"
        assert Notification.objects.get(pk=n.pk).status == "sending"
    finally:
        release.set()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Notification.objects.get(pk=n.pk).status == "sending":
        time.sleep(0.1)
    n.refresh_from_db()
    assert (n.status, n.http_status) == ("sent", 200), "the thread recorded the outcome itself"


# --- In-console inbox --------------------------------------------------------------


def test_the_inbox_threads_an_incident_and_says_who_acted(route, client, alice, carol):
    from alerts.models import InboxMessage
    from tests.conftest import login

    route(make("inbox"))
    incident = fire()
    assert deliver_all(T0) == ["sent"]
    item = InboxMessage.objects.get()
    assert item.incident == incident and item.headline == "[FIRING] [CRITICAL] API is down"
    assert "Error rate: 37%" in item.text and "/alerts/ack/" in item.ack_url
    ack_url = item.ack_url

    # Only someone who may acknowledge gets the button, and only while it means something.
    page = login(client, carol).get("/admin/alerts/inboxmessage/").content.decode()
    assert "[FIRING] [CRITICAL] API is down" in page and "inbox-ack" not in page
    page = login(client, alice).get("/admin/alerts/inboxmessage/").content.decode()
    assert f'class="button inbox-ack" href="{ack_url}"' in page

    incidents.acknowledge(incident, alice, now=T0 + timedelta(minutes=1))
    deliver_all(T0 + timedelta(minutes=1))
    item.refresh_from_db()
    assert InboxMessage.objects.count() == 1, "the update updates the incident's message"
    assert item.headline.startswith("[ACKNOWLEDGED]") and "Acknowledged by: alice" in item.text
    assert [h["event"] for h in item.history] == ["firing"]
    page = client.get("/admin/alerts/inboxmessage/").content.decode()
    assert "inbox-ack" not in page, "acknowledged: nothing left to acknowledge"
    assert "1 earlier update" in page and "[FIRING] [CRITICAL] API is down" in page

    incidents.resolve_incident("api:down", reason="fixed", now=T0 + timedelta(minutes=5))
    deliver_all(T0 + timedelta(minutes=5))
    item.refresh_from_db()
    assert InboxMessage.objects.count() == 1 and item.ack_url == ""
    assert "Resolved by: the console" in item.text and "Resolution: fixed" in item.text
    assert [h["event"] for h in item.history] == ["firing", "acknowledged"]
    page = login(client, carol).get("/admin/alerts/inboxmessage/").content.decode()
    assert "[RESOLVED] [CRITICAL] API is down" in page and "2 earlier updates" in page


def test_a_late_retry_of_an_older_event_never_overwrites_the_thread(route, alice):
    from alerts.channels.base import Message
    from alerts.channels.inbox import InboxChannel
    from alerts.models import InboxMessage

    channel = make("inbox")
    incident = fire()
    inbox = InboxChannel(channel)

    def message(event, at):
        return Message(event=event, title="API is down", priority="critical", component="api",
                       details={}, at=at, fingerprint="api:down", incident_id=incident.pk)  # fmt: skip

    inbox.send(message("acknowledged", T0 + timedelta(minutes=2)))
    inbox.send(message("firing", T0))  # the retry of the first page, arriving late
    thread = InboxMessage.objects.get()
    assert thread.event == "acknowledged" and thread.headline.startswith("[ACKNOWLEDGED]")
    assert [h["event"] for h in thread.history] == ["firing"]
