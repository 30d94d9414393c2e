"""Fire times of schedules, without a service: cron fields with seconds, one-shots, intervals, bounds,
daylight saving in both directions, and the messages bad schedules get."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from app.scheduler.fire_times import ScheduleTrigger, fire_times, next_fire, parse_schedule
from app.services.errors import Invalid


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(times: list[datetime], zone: str) -> list[str]:
    return [time.astimezone(ZoneInfo(zone)).isoformat() for time in times]


def cron(expression: str, after: str, count: int = 5, zone: str = "UTC", **bounds) -> list[str]:
    schedule = parse_schedule({"cron": expression}, zone, **bounds)
    return local(fire_times(schedule, utc(after), count), zone)


def test_the_first_of_six_fields_is_seconds():
    assert cron("*/10 * * * * *", "2026-12-01T10:00:00", 4) == [
        "2026-12-01T10:00:10+00:00",
        "2026-12-01T10:00:20+00:00",
        "2026-12-01T10:00:30+00:00",
        "2026-12-01T10:00:40+00:00",
    ]
    assert cron("5,7 0 12 * * *", "2026-12-01T10:00:00", 3) == [
        "2026-12-01T12:00:05+00:00",
        "2026-12-01T12:00:07+00:00",
        "2026-12-02T12:00:05+00:00",
    ]


def test_five_fields_fire_at_second_zero():
    assert cron("*/15 9 * * *", "2026-12-01T09:20:30", 3) == [
        "2026-12-01T09:30:00+00:00",
        "2026-12-01T09:45:00+00:00",
        "2026-12-02T09:00:00+00:00",
    ]


def test_ranges_steps_and_names():
    # 2026-12-01 is a Tuesday; weekdays count from Sunday as in cron, 7 is Sunday too.
    assert cron("0 0 8 * * mon-fri", "2026-12-04T09:00:00", 2) == [
        "2026-12-07T08:00:00+00:00",
        "2026-12-08T08:00:00+00:00",
    ]
    assert cron("0 0 8 * * 0", "2026-12-01T00:00:00", 1) == cron("0 0 8 * * 7", "2026-12-01T00:00:00", 1)
    assert cron("0 0 8 * * 0", "2026-12-01T00:00:00", 1) == ["2026-12-06T08:00:00+00:00"]
    assert cron("0 0 0 1 jan,JUL *", "2026-12-01T00:00:00", 2) == [
        "2027-01-01T00:00:00+00:00",
        "2027-07-01T00:00:00+00:00",
    ]
    assert cron("10-20/5 0 0 1 * *", "2026-12-01T00:00:00", 3) == [
        "2026-12-01T00:00:10+00:00",
        "2026-12-01T00:00:15+00:00",
        "2026-12-01T00:00:20+00:00",
    ]
    assert cron("0 30/15 * * * *", "2026-12-01T00:00:00", 3) == [
        "2026-12-01T00:30:00+00:00",
        "2026-12-01T00:45:00+00:00",
        "2026-12-01T01:30:00+00:00",
    ]


def test_l_is_the_last_day_of_the_month():
    assert cron("0 0 23 L * *", "2027-01-15T00:00:00", 3) == [
        "2027-01-31T23:00:00+00:00",
        "2027-02-28T23:00:00+00:00",
        "2027-03-31T23:00:00+00:00",
    ]
    assert cron("0 0 0 L feb *", "2027-03-01T00:00:00", 1) == ["2028-02-29T00:00:00+00:00"]
    assert cron("0 0 0 15,L * *", "2027-04-01T00:00:00", 2) == [
        "2027-04-15T00:00:00+00:00",
        "2027-04-30T00:00:00+00:00",
    ]


def test_a_one_shot_fires_once_in_its_zone():
    schedule = parse_schedule({"at": "2026-12-24T18:00:00"}, "Europe/Berlin")
    assert fire_times(schedule, utc("2026-12-01T00:00:00"), 3) == [utc("2026-12-24T17:00:00")]
    assert next_fire(schedule, utc("2026-12-24T17:00:00")) is None
    with_offset = parse_schedule({"at": "2026-12-24T18:00:00+00:00"}, "Europe/Berlin")
    assert with_offset.at == utc("2026-12-24T18:00:00")


def test_an_interval_counts_from_its_start_or_its_anchor():
    start = utc("2026-12-01T10:00:00")
    schedule = parse_schedule({"every": 90}, start_at=start)
    assert fire_times(schedule, utc("2026-12-01T09:00:00"), 3) == [
        start,
        start + timedelta(seconds=90),
        start + timedelta(seconds=180),
    ]
    assert next_fire(schedule, start + timedelta(seconds=100)) == start + timedelta(seconds=180)
    anchored = parse_schedule({"every": 1}, anchor=start)
    assert next_fire(anchored, start) == start + timedelta(seconds=1)


def test_nothing_fires_after_the_end_or_before_the_start():
    start, end = utc("2026-12-01T10:00:00"), utc("2026-12-01T10:00:30")
    assert cron("*/10 * * * * *", "2026-12-01T09:00:00", 10, start_at=start, end_at=end) == [
        "2026-12-01T10:00:00+00:00",
        "2026-12-01T10:00:10+00:00",
        "2026-12-01T10:00:20+00:00",
        "2026-12-01T10:00:30+00:00",
    ]
    schedule = parse_schedule({"every": 60}, start_at=start, end_at=end)
    assert fire_times(schedule, start, 5) == []


@pytest.mark.parametrize(
    ("zone", "day", "missing"),
    [
        ("Europe/Berlin", "2026-03-28T12:00:00", "2026-03-29"),
        ("America/New_York", "2026-03-07T12:00:00", "2026-03-08"),
    ],
)
def test_a_local_time_the_clocks_skip_does_not_fire(zone, day, missing):
    fired = cron("0 30 2 * * *", day, 3, zone)
    assert not any(time.startswith(missing) for time in fired)
    assert len(fired) == 3 and fired[0][:10] > missing
    # Times around the jump fire as usual: 01:59 and then 03:00.
    around = cron("0 59,0 1,2,3 * * *", day, 3, zone)
    assert [time[11:19] for time in around] == ["01:00:00", "01:59:00", "03:00:00"]


@pytest.mark.parametrize(
    ("zone", "day", "repeated"),
    [("Europe/Berlin", "2026-10-25", "02:30:00"), ("America/New_York", "2026-11-01", "01:30:00")],
)
def test_a_local_time_that_happens_twice_fires_once(zone, day, repeated):
    hour = int(repeated[:2])
    fired = cron(f"0 30 {hour} * * *", f"{day}T00:00:00", 2, zone)
    assert [time[:19] for time in fired] == [f"{day}T{repeated}", f"{fired[1][:10]}T{repeated}"]
    assert fired[1][:10] != day
    # Every 20 minutes through the repeated hour: each wall-clock time once, and never back in time.
    times = fire_times(
        parse_schedule({"cron": "0 */20 * * * *"}, zone), utc(f"{day}T00:00:00") - timedelta(hours=12), 60
    )
    walls = [time.astimezone(ZoneInfo(zone)).replace(tzinfo=None) for time in times]
    assert times == sorted(times) and len(set(walls)) == len(walls)
    assert sum(wall.hour == hour for wall in walls) == 3


def test_the_apscheduler_trigger_follows_the_same_rule():
    schedule = parse_schedule({"cron": "0 30 2 * * *"}, "Europe/Berlin")
    trigger = ScheduleTrigger(schedule)
    first = trigger.get_next_fire_time(None, utc("2026-10-24T12:00:00"))
    second = trigger.get_next_fire_time(first, first)
    third = trigger.get_next_fire_time(second, second)
    assert local([first, second, third], "Europe/Berlin") == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


@pytest.mark.parametrize(
    ("schedule", "zone", "field", "words"),
    [
        ({"cron": "* * * *"}, "UTC", "schedule.cron", "six fields"),
        ({"cron": "61 * * * * *"}, "UTC", "schedule.cron", "second field"),
        ({"cron": "0 60 * * * *"}, "UTC", "schedule.cron", "minute field"),
        ({"cron": "0 0 24 * * *"}, "UTC", "schedule.cron", "hour field"),
        ({"cron": "0 0 0 0 * *"}, "UTC", "schedule.cron", "day field"),
        ({"cron": "0 0 0 1 foo *"}, "UTC", "schedule.cron", "month field"),
        ({"cron": "0 0 0 * * 8"}, "UTC", "schedule.cron", "weekday field"),
        ({"cron": "0 0 0 * * fri-mon"}, "UTC", "schedule.cron", "runs backwards"),
        ({"cron": "*/0 * * * * *"}, "UTC", "schedule.cron", "step"),
        ({"cron": "0 0 0 31 feb *"}, "UTC", "schedule.cron", "day field"),
        ({"cron": "0 0 0 1 * * *"}, "UTC", "schedule.cron", "not 7"),
        ({"cron": 5}, "UTC", "schedule.cron", "string"),
        ({"at": "tomorrow"}, "UTC", "schedule.at", "ISO 8601"),
        ({"at": "2026-03-29T02:30:00"}, "Europe/Berlin", "schedule.at", "does not exist"),
        ({"every": 0}, "UTC", "schedule.every", "seconds"),
        ({"every": 1.5}, "UTC", "schedule.every", "seconds"),
        ({"every": 5, "cron": "* * * * *"}, "UTC", "schedule", "one of"),
        ({"never": 1}, "UTC", "schedule", "one of"),
        ({"every": 5}, "Mars/Olympus", "timezone", "IANA"),
    ],
)
def test_bad_schedules_name_what_is_wrong(schedule, zone, field, words):
    with pytest.raises(Invalid) as refused:
        parse_schedule(schedule, zone)
    assert refused.value.field == field
    assert words in refused.value.message


def test_an_end_before_the_start_is_refused():
    with pytest.raises(Invalid) as refused:
        parse_schedule({"every": 5}, start_at=utc("2026-12-02T00:00:00"), end_at=utc("2026-12-01T00:00:00"))
    assert refused.value.field == "end_at"
