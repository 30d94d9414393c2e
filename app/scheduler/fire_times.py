"""When a timed job fires: schedules parsed and checked, and their fire times (pure: no database, no clock).

A schedule is one of
- `{"cron": "<sec> <min> <hour> <day> <month> <weekday>"}`: seconds first; five fields mean second 0;
- `{"at": "2026-12-24T18:00:00"}`: once, in the timed job's zone unless the time carries its own offset;
- `{"every": 90}`: every so many seconds, counted from `start_at` (or from when the schedule was set).

Cron times are wall-clock times of the zone. On the day daylight saving starts, a local time that does not
exist does not fire; on the day it ends, a local time that happens twice fires once, the first time.
APScheduler 3's CronTrigger does neither on its own (it fires the missing time an hour late and the repeated
one twice, and an interval of minutes runs back in time over the repeated hour), so the fields are matched
by a CronTrigger on the naive wall clock and the zone's rules are applied here.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from app.services.errors import Invalid

EVERY_MIN = 1
EVERY_MAX = 366 * 24 * 3600
# How far ahead a cron expression is searched for its next time before it is taken never to fire.
SEARCH_YEARS = 8
MONTH_NAMES = {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name}
WEEKDAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
# APScheduler counts weekdays from Monday; cron from Sunday (and 7 is Sunday again).
APSCHEDULER_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
LAST_DAY = "L"


@dataclass(frozen=True)
class CronField:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


CRON_FIELDS = (
    CronField("second", 0, 59),
    CronField("minute", 0, 59),
    CronField("hour", 0, 23),
    CronField("day", 1, 31),
    CronField("month", 1, 12, MONTH_NAMES),
    CronField("weekday", 0, 7, WEEKDAY_NAMES),
)
ITEM = re.compile(
    r"^(?:(?P<all>[*?])|(?P<first>[A-Za-z0-9]+)(?:-(?P<last>[A-Za-z0-9]+))?)(?:/(?P<step>\d+))?$"
)


@dataclass(frozen=True)
class Cron:
    """A cron expression's fields as sets of the values that match (weekday 0 is Sunday)."""

    fields: dict[str, frozenset[int]]
    last_day: bool

    @cached_property
    def trigger(self) -> CronTrigger:
        """A CronTrigger matching these fields on a naive wall clock (read as UTC)."""
        days = [str(day) for day in sorted(self.fields["day"])] + (["last"] if self.last_day else [])
        weekdays = [APSCHEDULER_WEEKDAYS[day] for day in sorted(self.fields["weekday"])]
        return CronTrigger(
            second=listed(self.fields["second"]),
            minute=listed(self.fields["minute"]),
            hour=listed(self.fields["hour"]),
            day=",".join(days),
            month=listed(self.fields["month"]),
            day_of_week=",".join(weekdays),
            timezone=UTC,
        )


def listed(values: frozenset[int]) -> str:
    return ",".join(str(value) for value in sorted(values))


@dataclass(frozen=True)
class Schedule:
    """A checked schedule: exactly one of cron, at and every, with its zone and bounds."""

    zone: ZoneInfo
    cron: Cron | None = None
    at: datetime | None = None
    every: int | None = None
    # An interval's first fire time: its start, else one interval after it was set.
    first: datetime | None = None
    start_at: datetime | None = None
    end_at: datetime | None = None


def parse_cron(expression: str, where: str = "schedule.cron") -> Cron:
    """The expression's fields, or Invalid naming the field that is wrong."""
    if not isinstance(expression, str):
        raise Invalid("a cron expression is a string of five or six fields", where)
    parts = expression.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    if len(parts) != 6:
        raise Invalid(
            f"a cron expression has six fields (second minute hour day month weekday) or five (no seconds), "
            f"not {len(parts)}",
            where,
        )
    fields = {}
    last_day = False
    for field, text in zip(CRON_FIELDS, parts, strict=True):
        position = f"the {field.name} field ({text!r})"
        values: set[int] = set()
        for item in text.split(","):
            if field.name == "day" and item.upper() == LAST_DAY:
                last_day = True
                continue
            values |= parse_item(field, item, position, where)
        if field.name == "weekday" and 7 in values:
            values = (values - {7}) | {0}
        fields[field.name] = frozenset(values)
    if fields["day"] == frozenset(range(1, 32)) and last_day:
        last_day = False
    month_days = max(days_in_month(month) for month in fields["month"])
    if not last_day and min(fields["day"], default=99) > month_days:
        raise Invalid(f"the day field names no day that the months chosen have (at most {month_days})", where)
    return Cron(fields, last_day)


def days_in_month(month: int) -> int:
    return 29 if month == 2 else calendar.monthrange(2001, month)[1]


def parse_item(field: CronField, item: str, position: str, where: str) -> set[int]:
    match = ITEM.match(item)
    if not match:
        raise Invalid(f"{position}: {item!r} is not a value, a range, a list or a step", where)
    step = int(match["step"]) if match["step"] else 1
    if step < 1:
        raise Invalid(f"{position}: a step is at least 1", where)
    if match["all"]:
        first, last = field.low, field.high
    else:
        first = value_of(field, match["first"], position, where)
        if match["last"]:
            last = value_of(field, match["last"], position, where)
        else:
            last = field.high if match["step"] else first
    if first > last:
        raise Invalid(f"{position}: the range {item!r} runs backwards", where)
    return set(range(first, last + 1, step))


def value_of(field: CronField, text: str, position: str, where: str) -> int:
    if text.isdigit():
        value = int(text)
    elif field.names and text.lower() in field.names:
        value = field.names[text.lower()]
    else:
        kinds = "a number" + (" or a name (jan, mon...)" if field.names else "")
        raise Invalid(f"{position}: {text!r} is not {kinds}", where)
    if not field.low <= value <= field.high:
        raise Invalid(f"{position}: {value} is outside {field.low}-{field.high}", where)
    return value


def zone_of(name: str, where: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(f"{name!r} is not an IANA time zone (like Europe/Berlin or UTC)", where) from exc


def local_to_utc(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """The instant a naive wall-clock time names in the zone: its first occurrence when it happens twice,
    None when the zone skips it."""
    first = wall.replace(tzinfo=zone)
    instant = first.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != wall:
        return None
    return instant


def aware(value: datetime, zone: ZoneInfo, where: str) -> datetime:
    """A time given with an offset as it is, a naive one in the zone; in UTC."""
    if value.tzinfo is not None:
        return value.astimezone(UTC)
    instant = local_to_utc(value, zone)
    if instant is None:
        raise Invalid(f"{value.isoformat()} does not exist in {zone.key} (the clocks skip it)", where)
    return instant


def parse_schedule(
    schedule: dict,
    timezone: str = "UTC",
    start_at: datetime | None = None,
    end_at: datetime | None = None,
    anchor: datetime | None = None,
) -> Schedule:
    """A checked schedule; Invalid naming the field when it is wrong. `anchor` is where an interval without a
    start counts from (when the schedule was set)."""
    zone = zone_of(timezone)
    if not isinstance(schedule, dict) or len(schedule) != 1 or not schedule.keys() <= {"cron", "at", "every"}:
        raise Invalid("a schedule is one of {cron: ...}, {at: ...} or {every: seconds}", "schedule")
    start = aware(start_at, zone, "start_at") if start_at else None
    end = aware(end_at, zone, "end_at") if end_at else None
    if start and end and end <= start:
        raise Invalid("the end comes before the start", "end_at")
    bounds = {"zone": zone, "start_at": start, "end_at": end}
    if "cron" in schedule:
        return Schedule(cron=parse_cron(schedule["cron"]), **bounds)
    if "at" in schedule:
        at = schedule["at"]
        if isinstance(at, str):
            try:
                at = datetime.fromisoformat(at)
            except ValueError as exc:
                raise Invalid(f"{at!r} is not an ISO 8601 time", "schedule.at") from exc
        if not isinstance(at, datetime):
            raise Invalid("a one-shot time is an ISO 8601 time like 2026-12-24T18:00:00", "schedule.at")
        return Schedule(at=aware(at, zone, "schedule.at"), **bounds)
    every = schedule["every"]
    if type(every) is not int or not EVERY_MIN <= every <= EVERY_MAX:
        raise Invalid(
            f"an interval is a whole number of seconds from {EVERY_MIN} to {EVERY_MAX}", "schedule.every"
        )
    counted_from = anchor or datetime(1970, 1, 1, tzinfo=UTC)
    return Schedule(every=every, first=start or counted_from + timedelta(seconds=every), **bounds)


def next_fire(schedule: Schedule, after: datetime) -> datetime | None:
    """The first fire time strictly after `after` (aware), in UTC; None when it never fires again."""
    if schedule.start_at and after < schedule.start_at:
        after = schedule.start_at - timedelta(microseconds=1)
    if schedule.at is not None:
        found = schedule.at if schedule.at > after else None
    elif schedule.every is not None:
        found = next_interval(schedule.first, schedule.every, after)
    else:
        found = next_wall_clock(schedule.cron.trigger, schedule.zone, after)
    if found is None or (schedule.end_at and found > schedule.end_at):
        return None
    return found


def next_interval(first: datetime, every: int, after: datetime) -> datetime:
    if after < first:
        return first
    periods = int((after - first).total_seconds() // every) + 1
    return first + timedelta(seconds=periods * every)


def next_wall_clock(trigger: CronTrigger, zone: ZoneInfo, after: datetime) -> datetime | None:
    """The next matching wall-clock time that exists in the zone, taken at its first occurrence."""
    wall = after.astimezone(zone).replace(tzinfo=UTC)
    limit = after + timedelta(days=366 * SEARCH_YEARS)
    while True:
        candidate = trigger.get_next_fire_time(None, wall + timedelta(microseconds=1))
        if candidate is None or candidate > limit:
            return None
        instant = local_to_utc(candidate.replace(tzinfo=None), zone)
        # In the second pass of a repeated hour, a wall-clock time's first occurrence lies in the past.
        if instant is not None and instant > after:
            return instant
        wall = candidate


def fire_times(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire times (or fewer, when it stops firing), in UTC."""
    times: list[datetime] = []
    while len(times) < count:
        found = next_fire(schedule, times[-1] if times else after)
        if found is None:
            break
        times.append(found)
    return times


class ScheduleTrigger(BaseTrigger):
    """An APScheduler trigger that fires at a schedule's times."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        if previous_fire_time is not None:
            return next_fire(self.schedule, previous_fire_time)
        return next_fire(self.schedule, now - timedelta(microseconds=1))
