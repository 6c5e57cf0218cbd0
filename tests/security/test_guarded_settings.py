"""No single person holds production: guarded settings change with a second person only."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied

from deployments.models import Environment
from opsconsole.models import SettingChange
from tests.conftest import login
from tests.helpers import run_queued


@pytest.fixture
def dave(db, django_user_model):
    user = django_user_model.objects.create_user("dave", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Approver"))
    return user


@pytest.fixture
def production(db):
    env = Environment(name="production", provider="command",
                      provider_config={"rollback": ["true"]}, two_person_rule=True)  # fmt: skip
    env.full_clean()
    env.save()
    return env


def form_of(client, url):
    """The admin form's current values, as a browser would submit them."""
    response = client.get(url)
    form = response.context["adminform"].form
    data = {}
    from opsconsole.fields import SecretInput

    for name, field in form.fields.items():
        value = form[name].value()
        if value is None or isinstance(field.widget, SecretInput):
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif isinstance(value, list | dict):
            data[name] = form[name].field.prepare_value(value)
        else:
            data[name] = value
    for formset in response.context.get("inline_admin_formsets", []):
        management = formset.formset.management_form
        for name in management.fields:
            data[f"{management.prefix}-{name}"] = management[name].value()
    return data


def test_bob_cannot_switch_off_the_two_person_rule_alone(client, bob, dave, production):
    login(client, bob)
    url = f"/admin/deployments/environment/{production.pk}/change/"
    data = form_of(client, url)
    data.pop("two_person_rule", None)  # unticked
    data["max_error_rate"] = "50"
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    production.refresh_from_db()
    assert production.two_person_rule is True, "still in force"
    assert production.max_error_rate == 5.0, "the threshold is guarded too"
    change = SettingChange.objects.get()
    assert change.requested_by == bob
    assert change.changes["two_person_rule"] == {
        "label": "Two person rule",
        "from": True,
        "to": False,
        "secret": False,
    }
    assert change.changes["max_error_rate"]["to"] == 50.0
    page = client.get(f"/admin/opsconsole/settingchange/{change.pk}/change/").content.decode()
    assert "<del>yes</del>" in page and "<ins>no</ins>" in page
    with pytest.raises(PermissionDenied, match="two-person rule"):
        change.approve(bob, confirmation="production")
    change.approve(dave, confirmation="production")
    run_queued()
    change.refresh_from_db()
    production.refresh_from_db()
    assert change.status == "succeeded", change.error
    assert production.two_person_rule is False and production.max_error_rate == 50.0


def test_a_new_automatic_command_action_needs_a_second_person(client, bob, dave, alice):
    from dr.models import FailoverAction

    login(client, bob)
    response = client.post("/admin/dr/failoveraction/add/", {
        "name": "wipe", "kind": "command", "config": '{"argv": ["env"]}', "automatic": "on",
    })  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:3000]
    action = FailoverAction.objects.get(name="wipe")
    assert action.automatic is False, "created not automatic"
    run = action.request(bob)
    assert run.status == "requested", "so a run waits for a second person"
    change = SettingChange.objects.get()
    assert change.changes["automatic"]["to"] is True
    change.approve(dave, confirmation="wipe")
    run_queued()
    action.refresh_from_db()
    assert action.automatic is True


def test_the_production_flag_of_a_target_is_guarded(client, bob, dave):
    from backups.models import DatabaseTarget

    target = DatabaseTarget.objects.create(name="shop", engine="sqlite", dsn="sqlite:////tmp/x.db")
    login(client, bob)
    url = f"/admin/backups/databasetarget/{target.pk}/change/"
    data = form_of(client, url)
    data.pop("production", None)
    assert client.post(url, data).status_code == 302
    target.refresh_from_db()
    assert target.production is True
    assert SettingChange.objects.get().changes["production"]["to"] is False


def test_a_change_made_stale_by_another_fails_instead_of_overwriting(bob, dave, production):
    change = SettingChange.file(bob, production, {"max_error_rate": (5.0, 50.0)})
    Environment.objects.filter(pk=production.pk).update(max_error_rate=7.0)
    change.approve(dave, confirmation="production")
    run_queued()
    change.refresh_from_db()
    assert change.status == "failed" and "changed since this was requested" in change.error
    production.refresh_from_db()
    assert production.max_error_rate == 7.0


def test_an_approved_change_is_validated_like_a_form(bob, dave, production):
    change = SettingChange.file(bob, production, {"gradual_steps": ([], [90, 10])})
    change.approve(dave, confirmation="production")
    run_queued()
    change.refresh_from_db()
    assert change.status == "failed" and "Rising percentages" in change.error


def test_a_superuser_edit_applies_at_once(client, production, django_user_model):
    root = django_user_model.objects.create_superuser("root", password="x")
    login(client, root)
    url = f"/admin/deployments/environment/{production.pk}/change/"
    data = form_of(client, url)
    data.pop("two_person_rule", None)
    assert client.post(url, data).status_code == 302
    production.refresh_from_db()
    assert production.two_person_rule is False and not SettingChange.objects.exists()


def test_group_membership_changes_need_a_second_person(client, bob, dave, carol, django_user_model):
    from django.contrib.auth.models import Permission

    # An approver who was given the right to edit people still cannot make one alone.
    bob.user_permissions.add(*Permission.objects.filter(codename__in=["change_user", "view_user"]))
    login(client, bob)
    url = f"/admin/auth/user/{carol.pk}/change/"
    data = {"username": "carol", "is_active": "on", "is_staff": "on",
            "date_joined_0": "2026-11-01", "date_joined_1": "09:00:00",
            "groups": [str(Group.objects.get(name="Approver").pk)]}  # fmt: skip
    response = client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert list(carol.groups.values_list("name", flat=True)) == ["Viewer"]
    change = SettingChange.objects.get()
    assert change.changes["groups"] == {
        "label": "Groups",
        "from": ["Viewer"],
        "to": ["Approver"],
        "secret": False,
    }
    change.approve(dave, confirmation="carol")
    run_queued()
    assert list(carol.groups.values_list("name", flat=True)) == ["Approver"]


def test_a_channels_webhook_url_is_redirected_only_with_a_second_person(client, alice, bob):
    from alerts.models import Channel

    slack = Channel.objects.create(name="pager", kind="slack", config={},
                                   secret="https://hooks.slack.com/services/T/B/original")  # fmt: skip
    login(client, alice)
    url = f"/admin/alerts/channel/{slack.pk}/change/"
    new = "https://attacker.example/collect-pages"
    response = client.post(url, {"name": "pager", "kind": "slack", "enabled": "on",
                                 "config": "{}", "secret": new})  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    slack.refresh_from_db()
    assert slack.secret.reveal().endswith("/original"), "still in force"
    change = SettingChange.objects.get()
    page = client.get(f"/admin/opsconsole/settingchange/{change.pk}/change/").content.decode()
    assert "a new value (not shown)" in page and "attacker.example" not in page
    assert "attacker.example" not in str(change.changes)
    change.approve(bob, confirmation="pager")
    run_queued()
    slack.refresh_from_db()
    change.refresh_from_db()
    assert change.status == "succeeded", change.error
    assert slack.secret.reveal() == new
