"""The console's pure parts: the chart, the trigger editor's kinds, the hourly buckets."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from services.casestore.console import triggers
from services.casestore.console.charts import Bucket, hourly_chart
from services.casestore.console.health import buckets_by_automation, hours
from services.casestore.repo.stats import HourCount
from shared.automation_rules import Trigger

NOW = datetime(2026, 12, 1, 17, 25, tzinfo=UTC)


def test_chart_tells_outcomes_apart_without_colour() -> None:
    hour_list = hours(NOW)
    buckets = [Bucket(h) for h in hour_list[:-1]] + [Bucket(hour_list[-1], 3, 2, 1)]
    svg = str(hourly_chart(buckets, "c0", "To <CRM>"))
    assert 'aria-label="To &lt;CRM&gt;: deliveries per hour over the last 24 hours, ' \
           '3 succeeded, 2 failed, 1 waiting"' in svg
    assert "<title>17:00 UTC: 3 succeeded, 2 failed, 1 waiting</title>" in svg
    assert 'fill="url(#c0-hatch)"' in svg  # failed: hatched
    assert 'fill="url(#c0-dots)"' in svg  # waiting: dotted
    assert svg.count("<title>") == 24


def test_hours_are_the_last_24_ending_with_the_current_one() -> None:
    hour_list = hours(NOW)
    assert len(hour_list) == 24
    assert hour_list[-1] == NOW.replace(minute=0)
    assert hour_list[0] == NOW.replace(minute=0) - timedelta(hours=23)


def test_buckets_fill_the_hours_without_deliveries() -> None:
    hour_list, automation = hours(NOW), uuid.uuid4()
    counts = [HourCount(automation, hour_list[5], 4, 1, 0)]
    series = buckets_by_automation(counts, hour_list)[automation]
    assert [b.total for b in series].count(0) == 23
    assert series[5] == Bucket(hour_list[5], 4, 1, 0)


def test_editor_offers_every_trigger_kind_of_the_model() -> None:
    members = get_args(get_args(Trigger)[0])
    assert [k.event for k in triggers.KINDS] == [
        get_args(m.model_fields["event"].annotation)[0] for m in members]
    kinds = triggers.BY_EVENT
    assert [(p.name, p.kind) for p in kinds["field_changed"].params] == [("fields", "fields")]
    assert [(p.name, p.kind, p.required) for p in kinds["status_changed"].params] == [
        ("to", "statuses", False)]


def test_trigger_rows_round_trip_to_the_api() -> None:
    when: list[dict[str, Any]] = [{"event": "field_changed", "fields": ["a", "b"]},
                                  {"event": "status_changed"}]
    rows = triggers.rows_of(when)
    assert [r.to_api() for r in rows if r.use] == when
    assert len(rows) == len(when) + len(triggers.KINDS)


def test_a_kind_without_parameters_in_use_is_not_offered_again() -> None:
    rows = triggers.rows_of([{"event": "case_created"}, {"event": "field_changed",
                                                          "fields": ["a"]}])
    assert [r.event for r in rows].count("case_created") == 1
    assert [r.event for r in rows].count("field_changed") == 2  # another set of fields
    assert [r.event for r in rows].count("case_changed") == 1


def test_date_reached_offers_date_and_datetime_fields_only() -> None:
    [field] = [p for p in triggers.BY_EVENT["date_reached"].params if p.name == "field"]
    assert field.field_types == ("date", "datetime")
