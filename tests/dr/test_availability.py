"""The monthly availability report: from check history, maintenance windows left out."""

from datetime import datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from alerts.models import Silence
from dr.models import CheckResult, ServiceCheck, availability_report, month_bounds
from tests.conftest import login


def at(day: int, hour: int = 0, minute: int = 0) -> datetime:
    return timezone.make_aware(datetime(2026, 10, day, hour, minute))


@pytest.fixture
def api(db):
    check = ServiceCheck.objects.create(
        name="api", kind="tcp", config={"host": "127.0.0.1", "port": 9}, interval_seconds=60
    )
    # One result a minute for the first ten hours of October 3rd: 600 results.
    CheckResult.objects.bulk_create(
        CheckResult(service_check=check, at=at(3) + timedelta(minutes=i), ok=True, latency_ms=5)
        for i in range(600)
    )
    return check


def fail(check, start: datetime, minutes: int) -> None:
    CheckResult.objects.filter(
        service_check=check, at__gte=start, at__lt=start + timedelta(minutes=minutes)
    ).update(ok=False)


def test_availability_counts_failed_results_as_downtime(api):
    fail(api, at(3, 1), 6)
    row = api.availability(*month_bounds("2026-10"))
    assert (row["results"], row["failed"], row["downtime_minutes"]) == (600, 6, 6.0)
    assert row["availability"] == 99.0


def test_a_maintenance_window_is_left_out(api):
    fail(api, at(3, 1), 6)  # 01:00-01:06, inside the window
    fail(api, at(3, 5), 3)  # 05:00-05:03, outside it
    Silence.objects.create(component="api", starts_at=at(3, 0, 30), ends_at=at(3, 1, 30),
                           reason="database upgrade")  # fmt: skip
    Silence.objects.create(component="api", starts_at=at(3, 1), ends_at=at(3, 2),
                           reason="overlaps the first")  # fmt: skip
    Silence.objects.create(component="other", starts_at=at(3, 4), ends_at=at(3, 6),
                           reason="another service")  # fmt: skip
    row = api.availability(*month_bounds("2026-10"))
    assert row["excluded"] == 90 and row["maintenance_minutes"] == 90, "overlaps count once"
    assert (row["results"], row["failed"]) == (510, 3)
    assert row["availability"] == round(100 * 507 / 510, 3)


def test_the_report_covers_one_month_only(api):
    assert availability_report("2026-09")[2] == []
    assert [r["check"] for r in availability_report("2026-10")[2]] == ["api"]
    with pytest.raises(ValidationError, match="YYYY-MM"):
        month_bounds("October")


def test_the_admin_report_page_and_csv(client, alice, api):
    fail(api, at(3, 1), 6)
    login(client, alice)
    url = reverse("admin:dr_servicecheck_availability")
    page = client.get(url, {"month": "2026-10"})
    assert page.status_code == 200
    assert "99.000 %" in page.content.decode() and "6.0 min" in page.content.decode()
    csv = client.get(url, {"month": "2026-10", "format": "csv"})
    assert csv["Content-Disposition"] == 'attachment; filename="availability-2026-10.csv"'
    lines = csv.content.decode().splitlines()
    assert lines[0].startswith("check,availability") and lines[1].startswith("api,99.0,600,6,")
    bad = client.get(url, {"month": "last month"}, follow=True)
    assert "is not a month" in bad.content.decode()
