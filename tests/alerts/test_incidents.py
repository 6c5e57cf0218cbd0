"""The door: one open incident per fingerprint, cooldown, escalation, ack, silences, resolved."""

import threading
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction

from alerts import incidents
from alerts.models import Incident, Notification, Silence
from alerts.notify import ack_token, incident_from_token
from tests.alerts.conftest import T0, deliver_all
from tests.conftest import login


def raise_it(now=T0, priority="critical", fingerprint="disk:db1", component="database"):
    return incidents.raise_incident(
        source="test", fingerprint=fingerprint, title="Disk almost full", priority=priority,
        component=component, details={"value": 91}, now=now,
    )  # fmt: skip


def sent_to(incident, event=None):
    qs = Notification.objects.filter(incident=incident)
    if event:
        qs = qs.filter(event=event)
    return sorted(qs.values_list("channel__name", flat=True))


def test_raising_twice_opens_one_incident_and_counts_the_repeat(channels):
    first = raise_it()
    second = raise_it(now=T0 + timedelta(minutes=1))
    assert first.pk == second.pk
    first.refresh_from_db()
    assert first.count == 2 and first.last_seen_at == T0 + timedelta(minutes=1)
    assert sent_to(first) == ["first"], "a repeat inside the cooldown notifies nobody"
    assert list(first.events.values_list("kind", flat=True)) == ["opened", "notified"]


def test_the_database_refuses_a_second_open_incident(channels):
    raise_it()
    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.create(fingerprint="disk:db1", source="x", title="twin", priority="low")


def test_after_the_cooldown_a_repeat_notifies_again(channels):
    incident = raise_it()
    raise_it(now=T0 + timedelta(minutes=4))
    assert sent_to(incident, "repeat") == []
    raise_it(now=T0 + timedelta(minutes=6))  # critical cooldown: 5 minutes
    assert sent_to(incident, "repeat") == ["first"]
    assert incident.events.filter(kind="repeated").count() == 1


def test_a_flapping_source_does_not_page_again_within_the_cooldown(channels):
    first = raise_it()
    incidents.resolve_incident("disk:db1", reason="ok", now=T0 + timedelta(minutes=1))
    second = raise_it(now=T0 + timedelta(minutes=2))
    assert second.pk != first.pk
    assert sent_to(second) == []
    assert "cooldown" in second.events.last().message


def test_escalation_waits_for_each_level_and_stops_on_acknowledge(channels, alice):
    incident = raise_it()
    assert sent_to(incident) == ["first"]
    incidents.escalate_due(T0 + timedelta(minutes=14))
    assert sent_to(incident) == ["first"], "level 1 waits 15 minutes"
    incidents.escalate_due(T0 + timedelta(minutes=15))
    assert sent_to(incident) == ["first", "second"]
    incidents.escalate_due(T0 + timedelta(minutes=16))
    assert sent_to(incident) == ["first", "second"], "each level fires once"

    incident.refresh_from_db()
    incidents.acknowledge(incident, alice)
    incidents.escalate_due(T0 + timedelta(minutes=31))
    assert sent_to(incident, "firing") == ["first", "second"], "acknowledged: no level 2"
    assert sent_to(incident, "acknowledged") == ["first", "second"]
    incident.refresh_from_db()
    assert incident.status == "acknowledged" and incident.acknowledged_by == alice
    assert incident.next_escalation_at is None
    raise_it(now=T0 + timedelta(minutes=40))
    assert sent_to(incident, "repeat") == [], "acknowledged: no repeats"


def test_unacknowledged_reaches_the_last_level(channels):
    incident = raise_it()
    incidents.escalate_due(T0 + timedelta(minutes=15))
    incidents.escalate_due(T0 + timedelta(minutes=30))
    assert sent_to(incident, "firing") == ["first", "second", "third"]
    assert incident.events.filter(kind="escalated").count() == 2


def test_resolved_goes_to_everyone_told_firing_even_after_ack(channels, alice):
    incident = raise_it()
    incidents.escalate_due(T0 + timedelta(minutes=15))
    incident.refresh_from_db()
    incidents.acknowledge(incident, alice)
    incidents.resolve_incident("disk:db1", reason="cleaned up", now=T0 + timedelta(minutes=20))
    assert sent_to(incident, "resolved") == ["first", "second"]
    incident.refresh_from_db()
    assert incident.status == "resolved" and incident.resolution == "cleaned up"
    kinds = list(incident.events.values_list("kind", flat=True))
    assert kinds == ["opened", "notified", "escalated", "acknowledged", "resolved"]


def test_a_silenced_incident_is_recorded_but_not_notified(channels, alice):
    Silence.objects.create(component="database", starts_at=T0 - timedelta(hours=1),
                           ends_at=T0 + timedelta(hours=1), reason="maintenance", created_by=alice)  # fmt: skip
    incident = raise_it()
    assert incident.silenced
    assert sent_to(incident) == []
    incidents.escalate_due(T0 + timedelta(minutes=30))
    assert sent_to(incident) == []
    other = raise_it(fingerprint="api:down", component="api")
    assert not other.silenced and sent_to(other) == ["first"]


def test_when_the_silence_ends_the_open_incident_is_notified(channels):
    Silence.objects.create(
        component="database", starts_at=T0, ends_at=T0 + timedelta(minutes=30), reason="m"
    )
    incident = raise_it(now=T0 + timedelta(minutes=1))
    incidents.escalate_due(T0 + timedelta(minutes=29))
    assert sent_to(incident) == []
    incidents.escalate_due(T0 + timedelta(minutes=31))
    assert sent_to(incident) == ["first"]
    incidents.escalate_due(T0 + timedelta(minutes=45))
    assert sent_to(incident) == ["first"], "level 1 counts 15 minutes from the first notification"
    incidents.escalate_due(T0 + timedelta(minutes=46))
    assert sent_to(incident) == ["first", "second"]


def test_resolved_after_a_silence_started_still_reaches_those_told_firing(channels):
    incident = raise_it()
    Silence.objects.create(
        component="database", starts_at=T0, ends_at=T0 + timedelta(hours=1), reason="m"
    )
    incidents.resolve_incident("disk:db1", now=T0 + timedelta(minutes=5))
    assert sent_to(incident, "resolved") == ["first"]


def test_silences_are_validated(db, settings):
    settings.ALERTS_MAX_SILENCE_HOURS = 24
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="at most 24 hours"):
        Silence(
            component="x", starts_at=T0, ends_at=T0 + timedelta(days=2), reason="r"
        ).full_clean()
    with pytest.raises(ValidationError, match="end after it starts"):
        Silence(component="x", starts_at=T0, ends_at=T0, reason="r").full_clean()
    with pytest.raises(ValidationError, match="Say what to silence"):
        Silence(starts_at=T0, ends_at=T0 + timedelta(hours=1), reason="r").full_clean()


def test_carol_cannot_acknowledge(channels, carol, client):
    incident = raise_it()
    with pytest.raises(PermissionDenied):
        incidents.acknowledge(incident, carol)
    login(client, carol)
    response = client.post(f"/admin/alerts/incident/{incident.pk}/acknowledge/")
    assert response.status_code == 403
    incident.refresh_from_db()
    assert incident.status == "triggered"


def test_admin_acknowledge_button_and_timeline(channels, alice, client):
    incident = raise_it()
    login(client, alice)
    page = client.get(f"/admin/alerts/incident/{incident.pk}/change/").content.decode()
    assert "Acknowledge</button>" in page and "Timeline" in page
    response = client.post(f"/admin/alerts/incident/{incident.pk}/acknowledge/")
    assert response.status_code == 302
    incident.refresh_from_db()
    assert incident.status == "acknowledged"


def test_signed_ack_link_needs_login_then_confirmation(channels, alice, client):
    incident = raise_it()
    url = f"/alerts/ack/{ack_token(incident)}/"
    assert client.get(url).status_code == 302, "login first"
    login(client, alice)
    page = client.get(url)
    assert page.status_code == 200 and b"Acknowledging stops the escalation" in page.content
    assert b"Django administration" not in page.content and b">opsconsole</a>" in page.content
    incident.refresh_from_db()
    assert incident.status == "triggered", "GET changes nothing"
    assert client.post(url).status_code == 302
    incident.refresh_from_db()
    assert incident.status == "acknowledged"


def test_a_tampered_or_expired_ack_link_is_refused(channels, alice, client, settings):
    incident = raise_it()
    login(client, alice)
    token = ack_token(incident)
    assert client.get(f"/alerts/ack/{token[:-2]}xx/").status_code == 404
    settings.ALERTS_ACK_LINK_MAX_AGE = -1
    assert client.get(f"/alerts/ack/{token}/").status_code == 410


def test_notifications_carry_the_ack_link(channels):
    incident = raise_it()
    from alerts.notify import build_message

    message = build_message(Notification.objects.get(incident=incident))
    token = message.ack_url.split("/alerts/ack/")[1].rstrip("/")
    assert incident_from_token(token) == incident
    assert message.ack_url.startswith("http://127.0.0.1:8000/")
    assert "Acknowledge:" in message.text()


@pytest.mark.django_db(transaction=True)
def test_two_evaluators_racing_open_one_incident(channels):
    """Runs on both databases; only on PostgreSQL can the inserts really collide (below)."""
    barrier = threading.Barrier(4)
    results, errors = [], []

    def worker():
        from django.db import connections

        try:
            barrier.wait()
            results.append(raise_it().pk)
        except Exception as exc:  # the test reports it below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(set(results)) == 1
    incident = Incident.objects.get()
    assert incident.count == 4


def test_delivery_is_recorded_on_the_row(channels):
    incident = raise_it()
    assert deliver_all(T0) == ["sent"]
    n = Notification.objects.get(incident=incident)
    assert (n.status, n.attempts) == ("sent", 1) and n.sent_at is not None
    assert deliver_all(T0) == [], "sent rows are never sent again"


def test_notes_go_on_the_timeline_with_who_wrote_them(channels, alice, carol, client):
    incident = raise_it()
    login(client, alice)
    page = client.get(f"/admin/alerts/incident/{incident.pk}/change/").content.decode()
    assert "Add a note to the timeline" in page
    client.post(f"/admin/alerts/incident/{incident.pk}/note/", {"note": "disk cleaned, watching"})
    note = incident.events.get(kind="note")
    assert (note.message, note.user) == ("disk cleaned, watching", alice)
    client.post(f"/admin/alerts/incident/{incident.pk}/note/", {"note": "   "})
    assert incident.events.filter(kind="note").count() == 1, "an empty note is refused"
    login(client, carol)
    assert (
        client.post(f"/admin/alerts/incident/{incident.pk}/note/", {"note": "x"}).status_code == 403
    )


@pytest.mark.postgres_db
@pytest.mark.django_db(transaction=True)
def test_an_insert_that_loses_the_race_becomes_a_repeat(channels, monkeypatch):
    """Both workers have looked and found no open incident before either inserts.

    Only PostgreSQL lets two transactions interleave like this (the SQLite test
    settings serialise them), so the loser really gets the unique-constraint
    error and must retry as a repeat of the winner's incident.
    """
    from django.db import connections

    real_open = incidents._open
    barrier = threading.Barrier(2, timeout=20)
    collided = []

    def open_after_both_looked(*args, **kwargs):
        if threading.current_thread().name.startswith("racer") and not getattr(
            threading.current_thread(), "waited", False
        ):
            threading.current_thread().waited = True
            barrier.wait()
        try:
            return real_open(*args, **kwargs)
        except IntegrityError:
            collided.append(threading.current_thread().name)
            raise

    monkeypatch.setattr(incidents, "_open", open_after_both_looked)
    results, errors = [], []

    def racer():
        try:
            results.append(raise_it().pk)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=racer, name=f"racer-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert len(collided) == 1, "the two inserts really collided"
    assert len(set(results)) == 1
    assert Incident.objects.get().count == 2
