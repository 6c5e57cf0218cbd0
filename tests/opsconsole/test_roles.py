"""Roles and the two-person rule, enforced by the model and shown by the admin."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import PermissionDenied, ValidationError

from tests.conftest import login
from tests.testapp.models import ChangeRequest


@pytest.fixture
def request_by_alice(alice):
    return ChangeRequest.objects.create(
        environment="production", requested_by=alice, reason="bad deploy"
    )


def test_the_three_roles_exist_with_their_permissions(db):
    def perms(name):
        return set(Group.objects.get(name=name).permissions.values_list("codename", flat=True))

    viewer, operator, approver = perms("Viewer"), perms("Operator"), perms("Approver")
    assert viewer and all(p.startswith("view_") for p in viewer)
    assert {"run_jobs", "request_rollback", "request_restore", "acknowledge_incident",
            "work_runbooks"} <= operator  # fmt: skip
    assert not {p for p in operator if p.startswith("approve_")}
    assert {"approve_rollback", "approve_restore", "approve_failover"} <= approver
    assert viewer < operator < approver


def test_alice_the_operator_cannot_approve(request_by_alice, alice):
    with pytest.raises(PermissionDenied, match="approver role"):
        request_by_alice.approve(alice, confirmation="production")
    request_by_alice.refresh_from_db()
    assert request_by_alice.status == "requested"


def test_an_approver_cannot_approve_their_own_request(bob):
    own = ChangeRequest.objects.create(environment="production", requested_by=bob)
    with pytest.raises(PermissionDenied, match="two-person rule"):
        own.approve(bob, confirmation="production")


def test_without_the_two_person_rule_an_approver_may_approve_their_own(bob):
    own = ChangeRequest.objects.create(
        environment="staging", requested_by=bob, two_person_rule=False
    )
    own.approve(bob, confirmation="staging")
    assert own.status == "approved"


def test_bob_approves_after_typing_the_environment_name(request_by_alice, bob):
    with pytest.raises(ValidationError, match="Type 'production' exactly"):
        request_by_alice.approve(bob, confirmation="prod")
    request_by_alice.approve(bob, confirmation="production", note="checked the graphs")
    request_by_alice.refresh_from_db()
    assert (request_by_alice.status, request_by_alice.decided_by) == ("approved", bob)


def test_a_request_is_decided_once(request_by_alice, bob, django_user_model):
    other = django_user_model.objects.create_user("dave")
    other.groups.add(Group.objects.get(name="Approver"))
    request_by_alice.approve(bob, confirmation="production")
    stale = ChangeRequest.objects.get(pk=request_by_alice.pk)
    with pytest.raises(ValidationError, match="approved"):
        stale.reject(other)


def test_carol_the_viewer_gets_403_on_the_approve_action(client, carol, request_by_alice):
    login(client, carol)
    url = f"/admin/testapp/changerequest/{request_by_alice.pk}/approve/"
    assert client.get(url).status_code == 403
    assert client.post(url, {"confirmation": "production"}).status_code == 403
    request_by_alice.refresh_from_db()
    assert request_by_alice.status == "requested"


def test_alice_sees_no_approve_button_and_bob_does(client, alice, bob, request_by_alice):
    url = f"/admin/testapp/changerequest/{request_by_alice.pk}/change/"
    view = Permission.objects.get(codename="view_changerequest")
    for user in (alice, bob):
        user.user_permissions.add(view)
    page = login(client, alice).get(url).content.decode()
    assert "Approve…" not in page
    assert "two-person rule" not in page and "approver role" in page
    page = login(client, bob).get(url).content.decode()
    assert "Approve…" in page


def test_bob_approves_through_the_admin_with_a_typed_confirmation(client, bob, request_by_alice):
    bob.user_permissions.add(Permission.objects.get(codename="view_changerequest"))
    login(client, bob)
    url = f"/admin/testapp/changerequest/{request_by_alice.pk}/approve/"
    wrong = client.post(url, {"confirmation": "staging"})
    assert wrong.status_code == 200
    assert "Type &#x27;production&#x27; exactly to confirm." in wrong.content.decode()
    right = client.post(url, {"confirmation": "production", "note": "ok"})
    assert right.status_code == 302
    request_by_alice.refresh_from_db()
    assert request_by_alice.status == "approved"


@pytest.fixture
def dave(django_user_model):
    """A second approver."""
    user = django_user_model.objects.create_user("dave")
    user.groups.add(Group.objects.get(name="Approver"))
    return user


def test_two_stale_copies_cannot_both_decide(request_by_alice, bob, dave):
    # Two approvers opened the page while it was still requested: both copies say so.
    first = ChangeRequest.objects.get(pk=request_by_alice.pk)
    second = ChangeRequest.objects.get(pk=request_by_alice.pk)
    first.approve(bob, confirmation="production")
    with pytest.raises(ValidationError, match="already approved"):
        second.reject(dave, note="too late")
    with pytest.raises(ValidationError, match="already approved"):
        ChangeRequest.objects.get(pk=request_by_alice.pk).cancel(dave)
    request_by_alice.refresh_from_db()
    assert (request_by_alice.status, request_by_alice.decided_by) == ("approved", bob)


@pytest.mark.postgres_db
@pytest.mark.django_db(transaction=True)
def test_approvers_racing_on_postgresql_decide_once(django_user_model):
    """Real threads, each with its own connection and its own stale copy."""
    import threading

    from django.db import connections

    alice = django_user_model.objects.create_user("alice")
    approvers = []
    for name in ("bob", "dave", "erin", "frank"):
        user = django_user_model.objects.create_user(name)
        user.groups.add(Group.objects.get(name="Approver"))
        approvers.append(user)
    request = ChangeRequest.objects.create(environment="production", requested_by=alice)
    copies = [ChangeRequest.objects.get(pk=request.pk) for _ in approvers]
    barrier = threading.Barrier(len(approvers), timeout=20)
    won, lost = [], []

    def decide(copy, user):
        try:
            barrier.wait()
            copy.approve(user, confirmation="production")
            won.append(user.username)
        except ValidationError:
            lost.append(user.username)
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=decide, args=pair) for pair in zip(copies, approvers, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(won) == 1 and len(lost) == 3, (won, lost)
    request.refresh_from_db()
    assert request.decided_by.username == won[0]


def test_working_runbooks_is_its_own_permission(db, django_user_model):
    from django.core.exceptions import PermissionDenied as Denied

    from dr.models import Runbook

    acker = django_user_model.objects.create_user("acker")
    acker.user_permissions.add(Permission.objects.get(codename="acknowledge_incident"))
    runbook = Runbook.objects.first()
    with pytest.raises(Denied, match="may not work runbooks"):
        runbook.start(acker)
    worker = django_user_model.objects.create_user("worker")
    worker.user_permissions.add(Permission.objects.get(codename="work_runbooks"))
    execution = runbook.start(worker)
    assert execution.check_off(runbook.steps.first(), worker).done_by == worker
