"""The console speaks of itself and of what it shows, in words: no default admin phrasing."""

from django.contrib.auth.models import User

from alerts.incidents import raise_incident
from tests.conftest import login


def test_lists_are_titled_by_what_they_list(client, carol):
    page = login(client, carol).get("/admin/deployments/deployment/").content.decode()
    assert "<h1>Deployments</h1>" in page and "Select deployment" not in page
    assert "<title>Deployments | opsconsole</title>" in page


def test_no_default_admin_branding_and_no_view_site_loop(client, carol):
    page = login(client, carol).get("/admin/").content.decode()
    assert "Django administration" not in page and "Django site admin" not in page
    assert "View site" not in page


def test_incidents_filter_silenced_in_words_and_titles_without_priority(client, carol):
    incident = raise_incident("test", "db", "Database down", "critical")
    listing = login(client, carol).get("/admin/alerts/incident/").content.decode()
    assert "Not silenced" in listing and "Not empty" not in listing
    page = client.get(f"/admin/alerts/incident/{incident.pk}/change/").content.decode()
    assert "[critical]" not in page and f"#{incident.pk} Database down" in page


def test_a_requester_link_shows_the_person_not_a_403(client, alice, carol):
    alice.first_name, alice.email = "Alice", "alice@example.com"
    alice.save()
    page = login(client, carol).get(f"/admin/auth/user/{alice.pk}/change/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Operator" in body and "alice@example.com" in body
    assert "pbkdf2" not in body and "Password" not in body, "nothing about signing in"
    assert 'name="_save"' not in body, "read-only"
    response = client.post(f"/admin/auth/user/{alice.pk}/change/", {"username": "mallory"})
    assert response.status_code == 403
    assert User.objects.get(pk=alice.pk).username == "alice"
