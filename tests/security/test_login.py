"""Logging in: throttled failures, a second factor for approvers, sessions that end, a CSP."""

import base64
import re
import time

import pytest
from django.contrib.auth.models import Group
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

PASSWORD = "a-long-right-password"


@pytest.fixture
def people(db, django_user_model):
    made = {}
    for name, role in (("alice", "Operator"), ("bob", "Approver"), ("carol", "Viewer")):
        user = django_user_model.objects.create_user(name, password=PASSWORD, is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        made[name] = user
    return made


def log_in(client, username, password=PASSWORD, **extra):
    return client.post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}, **extra
    )


def code_for(device) -> str:
    return f"{totp(device.bin_key):06d}"


def test_thirty_wrong_passwords_lock_the_account_and_the_right_one_is_refused(client, people):
    answers = [log_in(client, "alice", "wrong").status_code for _ in range(30)]
    assert answers[:4] == [200] * 4, "the login form again, with its error"
    assert set(answers[5:]) == {429}, "then refused outright"
    locked = log_in(client, "alice")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()
    assert "ask an administrator to unlock" in locked.content.decode()


def test_an_administrator_unlocks_and_the_cool_off_ends_it(client, people, settings):
    from axes.models import AccessAttempt
    from axes.utils import reset

    for _ in range(5):
        log_in(client, "alice", "wrong")
    assert log_in(client, "alice").status_code == 429
    assert AccessAttempt.objects.filter(username="alice").exists(), "listed for the admin"
    reset(username="alice")  # what the admin's delete and `axes_reset_username` do
    assert log_in(client, "alice").status_code == 302
    client.logout()
    for _ in range(5):
        log_in(client, "alice", "wrong")
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.first().attempt_time
                                 - settings.AXES_COOLOFF_TIME * 2)  # fmt: skip
    assert log_in(client, "alice").status_code == 302, "the cool-off is over"


def test_one_address_guessing_many_names_is_locked_out_too(client, people):
    for name in ("a1", "a2", "a3", "a4", "a5"):
        log_in(client, name, "wrong", REMOTE_ADDR="203.0.113.9")
    assert log_in(client, "carol", REMOTE_ADDR="203.0.113.9").status_code == 429
    assert log_in(client, "carol", REMOTE_ADDR="203.0.113.10").status_code == 302


def test_an_approver_enrols_a_second_factor_on_first_login(client, people):
    assert log_in(client, "bob").status_code == 302
    page = client.get("/admin/")
    assert page.status_code == 302 and page.url.startswith("/admin/second-factor/")
    assert client.get("/admin/deployments/rollbackrequest/").url.startswith("/admin/second-factor/")
    enrol = client.get(page.url).content.decode()
    assert "data:image/svg+xml" in enrol and "Turn on two-factor authentication" in enrol
    device = TOTPDevice.objects.get(user=people["bob"], confirmed=False)
    key = re.search(r'class="totp-key">([A-Z2-7 ]+)<', enrol).group(1).replace(" ", "")
    assert base64.b32decode(key + "=" * (-len(key) % 8)) == device.bin_key
    wrong = client.post("/admin/second-factor/", {"code": "000000", "next": "/admin/"})
    assert "That code is not right" in wrong.content.decode()
    # django-otp throttles after a failure (1 s, doubling): as if that second had passed.
    TOTPDevice.objects.filter(pk=device.pk).update(throttling_failure_timestamp=None)
    done = client.post("/admin/second-factor/", {"code": code_for(device), "next": "/admin/"})
    codes = re.findall(r"<li><code>([0-9a-f]{10})</code></li>", done.content.decode())
    assert len(codes) == 10, "ten recovery codes, shown once"
    assert client.get("/admin/").status_code == 200

    client.logout()
    log_in(client, "bob")
    ask = client.get("/admin/second-factor/?next=/admin/").content.decode()
    assert "Enter the 6-digit code" in ask and "data:image" not in ask, "no new enrolment"
    assert (
        client.post("/admin/second-factor/", {"code": codes[0], "next": "/admin/"}).status_code
        == 302
    )
    client.logout()
    log_in(client, "bob")
    again = client.post("/admin/second-factor/", {"code": codes[0], "next": "/admin/"})
    assert again.status_code == 200 and "used already" in again.content.decode()


def test_operators_and_viewers_need_no_second_factor_but_may_turn_it_on(client, people):
    for name in ("alice", "carol"):
        log_in(client, name)
        assert client.get("/admin/").status_code == 200, name
        assert "Two-factor authentication" in client.get("/admin/").content.decode()
        client.logout()


def test_everyone_needs_one_when_the_setting_says_so(client, people, settings):
    settings.OPSCONSOLE_SECOND_FACTOR = "everyone"
    log_in(client, "carol")
    assert client.get("/admin/").url.startswith("/admin/second-factor/")


def test_an_approver_is_signed_out_after_an_hour_idle_and_the_dashboard_refresh_is_no_activity(
    client, people
):
    people_device = TOTPDevice.objects.create(user=people["bob"], confirmed=True, name="app")
    log_in(client, "bob")
    client.post("/admin/second-factor/", {"code": code_for(people_device), "next": "/admin/"})
    assert client.get("/admin/").status_code == 200
    session = client.session
    session["opsconsole_seen"] = time.time() - 59 * 60
    session.save()
    assert client.get("/admin/dashboard/panels/").status_code == 200
    session = client.session
    session["opsconsole_seen"] -= 2 * 60  # 61 minutes: the refresh did not count
    session.save()
    page = client.get("/admin/")
    assert page.status_code == 302 and page.url.startswith("/admin/login/")


def test_a_viewer_stays_signed_in_longer_but_no_session_outlives_its_lifetime(
    client, people, settings
):
    log_in(client, "carol")
    session = client.session
    session["opsconsole_seen"] = time.time() - 2 * 3600
    session.save()
    assert client.get("/admin/").status_code == 200, "two idle hours are fine for a viewer"
    session = client.session
    session["opsconsole_started"] = time.time() - settings.SESSION_COOKIE_AGE - 1
    session.save()
    assert client.get("/admin/").url.startswith("/admin/login/")


def test_pages_carry_a_content_security_policy_without_inline_script(client, people):
    log_in(client, "alice")
    response = client.get("/admin/")
    policy = response["Content-Security-Policy"]
    script = re.search(r"script-src ([^;]+)", policy).group(1)
    assert script.strip() == "'self'"
    assert "frame-ancestors 'none'" in policy
    for url in ("/admin/", "/admin/alerts/alertrule/add/", "/admin/login/"):
        body = client.get(url).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", body), url
