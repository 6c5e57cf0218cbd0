"""Alert rules: validation people understand, state kept per label set, the door called."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from alerts.evaluation import aggregate_values, backtest, evaluate_rule
from alerts.models import AlertRule, Incident, MetricSample, RuleState
from tests.alerts.conftest import T0
from tests.conftest import login


def rule(**overrides) -> AlertRule:
    fields = dict(
        name="error rate", metric_key="api.error_rate", aggregation="avg", window_seconds=300,
        comparator="above", threshold=5, for_seconds=300, priority="high",
        message_template="error rate {value}% (threshold {threshold}%) for {duration}",
    )  # fmt: skip
    fields.update(overrides)
    return AlertRule.objects.create(**fields)


def sample(value, at, key="api.error_rate", **labels):
    MetricSample.objects.create(key=key, value=value, observed_at=at, labels=labels)


def test_the_nine_original_rules_ship_and_cache_hit_rate_is_a_lower_bound(db):
    names = set(AlertRule.objects.values_list("name", flat=True))
    assert len(names) >= 9
    cache = AlertRule.objects.get(metric_key="business.cache_hit_rate")
    assert (cache.comparator, cache.threshold, cache.for_seconds) == ("below", 60, 1800)
    payments = AlertRule.objects.get(metric_key="business.payment_failure")
    assert (payments.priority, payments.window_seconds, payments.threshold) == ("critical", 3600, 5)
    for shipped in AlertRule.objects.all():
        shipped.full_clean()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"message_template": "value {valu}"}, "message_template", "Unknown placeholder {valu}"),
        ({"message_template": "value {"}, "message_template", "malformed"),
        ({"for_seconds": -5}, "for_seconds", "A duration cannot be negative."),
        ({"keep_firing_seconds": -1}, "keep_firing_seconds", "A duration cannot be negative."),
        ({"aggregation": "p95", "window_seconds": 0}, "window_seconds", "needs a window"),
        ({"threshold": float("nan")}, "threshold", "finite number"),
        ({"label_matchers": {"bad-name": "x"}}, "label_matchers", "Label matchers"),
    ],
)
def test_validation_names_the_problem(db, overrides, field, message):
    candidate = AlertRule(**{"name": "x", "metric_key": "k", "threshold": 1, **overrides})
    with pytest.raises(ValidationError) as caught:
        candidate.full_clean()
    assert any(message in m for m in caught.value.message_dict[field]), caught.value.message_dict


def test_pending_then_firing_then_resolved(channels):
    r = rule()
    for minute in range(0, 16):
        sample(9.0, T0 + timedelta(minutes=minute))
    evaluate_rule(r, T0 + timedelta(minutes=1))
    state = RuleState.objects.get(rule=r)
    assert state.state == "pending"
    assert not Incident.objects.exists()
    evaluate_rule(r, T0 + timedelta(minutes=4))
    assert RuleState.objects.get(rule=r).state == "pending"
    evaluate_rule(r, T0 + timedelta(minutes=6))  # held 5 minutes
    assert RuleState.objects.get(rule=r).state == "firing"
    incident = Incident.objects.get()
    assert incident.title == "error rate 9% (threshold 5%) for 5m"
    assert incident.priority == "high" and incident.status == "triggered"
    assert incident.details["rule_id"] == r.pk

    for minute in range(16, 30):
        sample(1.0, T0 + timedelta(minutes=minute))
    evaluate_rule(r, T0 + timedelta(minutes=25))  # the 5-minute average is back under 5
    assert RuleState.objects.get(rule=r).state == "inactive"
    incident.refresh_from_db()
    assert incident.status == "resolved" and incident.resolution == "condition cleared"


def test_a_blip_shorter_than_for_never_fires(channels):
    r = rule()
    sample(50, T0)
    evaluate_rule(r, T0 + timedelta(seconds=30))
    sample(0, T0 + timedelta(minutes=1))
    sample(0, T0 + timedelta(minutes=2))
    for s in range(3):
        sample(0, T0 + timedelta(minutes=3 + s))
    evaluate_rule(r, T0 + timedelta(minutes=6))
    assert RuleState.objects.get(rule=r).state == "inactive"
    assert not Incident.objects.exists()


def test_each_label_set_has_its_own_state(channels):
    r = rule(aggregation="last", window_seconds=0, for_seconds=0, label_matchers={"env": "prod"})
    sample(9, T0, service="api", env="prod")
    sample(1, T0, service="worker", env="prod")
    sample(99, T0, service="api", env="staging")  # not matched
    evaluate_rule(r, T0 + timedelta(seconds=10))
    states = dict(RuleState.objects.filter(rule=r).values_list("labels_key", "state"))
    assert states == {"env=prod,service=api": "firing", "env=prod,service=worker": "inactive"}
    assert Incident.objects.get().fingerprint == f"rule:{r.pk}:env=prod,service=api"


def test_below_comparator(channels):
    r = rule(metric_key="cache.hit", comparator="below", threshold=60, aggregation="last",
             window_seconds=0, for_seconds=0)  # fmt: skip
    sample(40, T0, key="cache.hit")
    evaluate_rule(r, T0 + timedelta(seconds=5))
    assert Incident.objects.filter(status="triggered").count() == 1


@pytest.mark.parametrize(
    ("no_data", "expected_state", "incident_status"),
    [
        ("ok", None, "resolved"),
        ("keep", "firing", "triggered"),
        ("alerting", "firing", "triggered"),
    ],
)
def test_no_data_behaviours(channels, no_data, expected_state, incident_status):
    r = rule(aggregation="last", window_seconds=0, for_seconds=0, no_data=no_data)
    sample(9, T0)
    evaluate_rule(r, T0 + timedelta(seconds=10))
    assert RuleState.objects.get(rule=r).state == "firing"
    evaluate_rule(r, T0 + timedelta(minutes=10))  # the sample is older than the 5-minute lookback
    state = RuleState.objects.filter(rule=r).first()
    assert (state.state if state else None) == expected_state
    assert Incident.objects.get().status == incident_status


def test_no_data_alerting_fires_for_a_metric_never_seen(channels):
    r = rule(
        metric_key="never.reported",
        aggregation="last",
        window_seconds=0,
        for_seconds=0,
        no_data="alerting",
    )
    evaluate_rule(r, T0)
    incident = Incident.objects.get()
    assert "no data" in incident.title


def test_keep_firing_for_guards_against_flapping(channels):
    r = rule(aggregation="last", window_seconds=0, for_seconds=0, keep_firing_seconds=300)
    sample(9, T0)
    evaluate_rule(r, T0 + timedelta(seconds=1))
    sample(1, T0 + timedelta(minutes=1))
    evaluate_rule(r, T0 + timedelta(minutes=1, seconds=1))
    assert RuleState.objects.get(rule=r).state == "firing", "held by keep-firing-for"
    sample(1, T0 + timedelta(minutes=6))
    evaluate_rule(r, T0 + timedelta(minutes=6, seconds=1))
    assert RuleState.objects.get(rule=r).state == "inactive"
    assert Incident.objects.get().status == "resolved"


def test_a_restarted_evaluator_continues_from_the_stored_state(channels):
    r = rule(for_seconds=120, aggregation="last", window_seconds=0)
    sample(9, T0)
    evaluate_rule(r, T0 + timedelta(seconds=1))
    # A new process: nothing in memory, only the database.
    fresh = AlertRule.objects.get(pk=r.pk)
    sample(9, T0 + timedelta(minutes=2))
    evaluate_rule(fresh, T0 + timedelta(minutes=2, seconds=2))
    assert RuleState.objects.get(rule=r).state == "firing"


def test_python_and_database_aggregations_agree(db):
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0]
    for i, v in enumerate(values):
        sample(v, T0 + timedelta(seconds=i))
    from alerts.evaluation import current_values

    for agg in ("avg", "min", "max", "sum", "count", "p95", "last"):
        r = AlertRule(
            name=agg, metric_key="api.error_rate", aggregation=agg, window_seconds=60, threshold=0
        )
        (value,) = [v for _, v in current_values(r, T0 + timedelta(seconds=10)).values()]
        assert value == pytest.approx(aggregate_values(agg, values)), agg
    assert aggregate_values("p95", values) == pytest.approx(7.95)


def test_backtest_counts_firings_over_seven_days(db):
    r = AlertRule(name="bt", metric_key="api.error_rate", aggregation="last", window_seconds=0,
                  threshold=5, for_seconds=120)  # fmt: skip
    now = T0 + timedelta(days=7)
    # Three bursts of 10 minutes above the threshold, each long enough to fire once.
    for day in (1, 3, 5):
        for minute in range(10):
            sample(9, T0 + timedelta(days=day, minutes=minute))
        sample(1, T0 + timedelta(days=day, minutes=10))
    # One blip too short to fire.
    sample(9, T0 + timedelta(days=6))
    sample(1, T0 + timedelta(days=6, minutes=1))
    assert backtest(r, now)["firings"] == 3


def test_admin_preview_shows_value_and_backtest_without_saving(client, alice, db):
    login(client, alice)
    sample(12, timezone.now() - timedelta(seconds=30))
    form = {
        "name": "preview me", "category": "api", "component": "", "priority": "high", "enabled": "on",
        "description": "", "metric_key": "api.error_rate", "label_matchers": "{}", "aggregation": "last",
        "window_seconds": "0", "comparator": "above", "threshold": "5", "for_seconds": "0",
        "keep_firing_seconds": "0", "no_data": "keep", "message_template": "{value}", "runbook_url": "",
        "states-TOTAL_FORMS": "0", "states-INITIAL_FORMS": "0",
    }  # fmt: skip
    response = client.post("/admin/alerts/alertrule/preview/", form)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["now"][0]["value"] == 12 and body["now"][0]["breaching"] is True
    assert body["backtest"]["firings"] == 1
    assert not AlertRule.objects.filter(name="preview me").exists()

    bad = client.post("/admin/alerts/alertrule/preview/", {**form, "message_template": "{oops}"})
    assert bad.status_code == 400
    assert "Unknown placeholder {oops}" in bad.json()["errors"]["message_template"][0]


def test_admin_form_shows_the_error_inline(client, alice):
    login(client, alice)
    form = {
        "name": "bad", "category": "api", "priority": "high", "metric_key": "k", "label_matchers": "{}",
        "aggregation": "avg", "window_seconds": "0", "comparator": "above", "threshold": "abc",
        "for_seconds": "-1", "keep_firing_seconds": "0", "no_data": "keep", "message_template": "{nope}",
        "states-TOTAL_FORMS": "0", "states-INITIAL_FORMS": "0",
    }  # fmt: skip
    page = client.post("/admin/alerts/alertrule/add/", form).content.decode()
    assert "Enter a number." in page
    assert not AlertRule.objects.filter(name="bad").exists()
    page = client.post("/admin/alerts/alertrule/add/", {**form, "threshold": "5"}).content.decode()
    assert "Unknown placeholder {nope}" in page
    assert "A duration cannot be negative." in page
    assert "needs a window" in page


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_evaluators_open_one_incident(channels):
    import threading

    from django.db import connections

    r = rule(aggregation="last", window_seconds=0, for_seconds=0)
    sample(9, T0)
    barrier = threading.Barrier(2)
    errors = []

    def evaluator():
        try:
            barrier.wait()
            evaluate_rule(AlertRule.objects.get(pk=r.pk), T0 + timedelta(seconds=5))
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=evaluator) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    incident = Incident.objects.get()
    assert incident.count == 1, "the second evaluator saw the state already firing"
    assert RuleState.objects.get(rule=r).state == "firing"


def test_alert_work_runs_on_the_alert_path_and_only_housekeeping_on_the_jobs_worker(db):
    from django.utils.module_loading import import_string
    from django_q.models import Schedule

    from opsconsole import alertpath

    loops = {loop.name: loop for loop in alertpath.registered()}
    for name in ("dr.checks", "alerts.sources", "alerts.rules", "alerts.escalate",
                 "alerts.deliver"):  # fmt: skip
        assert loops[name].every <= 1, f"{name} ticks to the second, not every 30 s"
        assert callable(import_string(loops[name].func))
    assert loops["opsconsole.heartbeat"].every <= 5 and loops["opsconsole.reconcile"].every <= 10
    assert loops["deployments.watch"].every <= 5, "a breach is seen within 5 s"
    scheduled = set(Schedule.objects.values_list("func", flat=True))
    assert {"alerts.tasks.prune", "opsconsole.tasks.heartbeat"} <= scheduled
    assert not {loop.func for loop in loops.values()} & scheduled, "nothing runs in both"


def test_one_broken_rule_does_not_stop_the_tick(channels, monkeypatch):
    from alerts import evaluation

    good = rule(name="good", aggregation="last", window_seconds=0, for_seconds=0)
    bad = rule(name="bad", metric_key="other", aggregation="last", window_seconds=0, for_seconds=0)
    sample(9, T0)
    real = evaluation.current_values

    def flaky(r, now):
        if r.pk == bad.pk:
            raise RuntimeError("broken rule")
        return real(r, now)

    monkeypatch.setattr(evaluation, "current_values", flaky)
    assert evaluation.evaluate_all(T0 + timedelta(seconds=5)) >= 2
    assert RuleState.objects.get(rule=good).state == "firing"
    assert Incident.objects.filter(details__rule_id=good.pk).exists()
