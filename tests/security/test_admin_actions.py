"""Every action of every admin answers 403 to a viewer, and changes nothing."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django_q.models import OrmQ, Schedule, Success

from tests.security.test_secret_canaries import make_records


def snapshot():
    return {
        model._meta.label: sorted(map(repr, model._default_manager.values()))
        for model in admin.site._registry
    }


@pytest.fixture
def carol(db, django_user_model):
    user = django_user_model.objects.create_user("carol", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="Viewer"))
    return user


@pytest.fixture
def finished_task(db):
    """A finished task, as a worker leaves it: the one a viewer once resubmitted."""
    from django.utils import timezone

    return Success.objects.create(
        id="a" * 32, name="task-1", func="dr.tasks.run_checks", started=timezone.now(),
        stopped=timezone.now(), success=True,
    )  # fmt: skip


def test_a_viewer_gets_403_for_every_action_of_every_admin(client, carol, finished_task):
    make_records()
    Schedule.objects.create(name="x.y", func="dr.tasks.run_checks", schedule_type=Schedule.HOURLY)
    client.force_login(carol)
    before, queued = snapshot(), OrmQ.objects.count()
    tried = []
    for model, model_admin in admin.site._registry.items():
        pk = model._default_manager.values_list("pk", flat=True).first()
        if pk is None:
            continue
        for name in [name for _, name, _ in model_admin._get_base_actions()]:
            url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
            response = client.post(url, {"action": name, "_selected_action": [str(pk)],
                                         "post": "yes", "index": "0"})  # fmt: skip
            tried.append(f"{model._meta.label}:{name}")
            assert response.status_code == 403, (
                f"{model._meta.label} {name}: {response.status_code}"
            )
    assert "django_q.Success:resubmit_task" in tried and len(tried) > 20
    assert snapshot() == before, "nothing changed"
    assert OrmQ.objects.count() == queued, "nothing was queued"


def test_the_task_queue_pages_are_read_only_for_all_but_superusers(client, carol, finished_task,
                                                                   django_user_model):  # fmt: skip
    operator = django_user_model.objects.create_user("bob", is_staff=True)
    operator.groups.add(Group.objects.get(name="Approver"))
    for user in (carol, operator):
        client.force_login(user)
        page = client.get("/admin/django_q/success/").content.decode()
        assert "resubmit" not in page.lower() and 'name="action"' not in page
        assert client.get(f"/admin/django_q/success/{finished_task.pk}/change/").status_code == 200
        assert client.get(f"/admin/django_q/success/{finished_task.pk}/delete/").status_code == 403
    root = django_user_model.objects.create_superuser("root", password="x")
    client.force_login(root)
    assert "resubmit" in client.get("/admin/django_q/success/").content.decode().lower()
