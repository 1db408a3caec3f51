"""On/off hours: the schedule as a pure function of given dates (no sleeping, no clock)."""

from datetime import datetime, timedelta

import pytest

from engine.schedule import Schedule, ScheduleError

MON = datetime(2026, 11, 23)  # a Monday


def at(day: int, hh: int, mm: int = 0) -> datetime:
    """Day 0 = Monday of that week, at hh:mm."""
    return MON + timedelta(days=day, hours=hh, minutes=mm)


def test_every_day_between_two_times_start_in_end_out():
    s = Schedule("10:00-18:00")
    for day in range(7):
        assert not s.is_on(at(day, 9, 59))
        assert s.is_on(at(day, 10, 0))
        assert s.is_on(at(day, 17, 59) + timedelta(seconds=59))
        assert not s.is_on(at(day, 18, 0))


def test_weekdays_and_several_ranges():
    s = Schedule("mon-fri 10:00-13:00 14:00-18:00; sat,sun 12:00-20:00")
    assert s.is_on(at(0, 11)) and not s.is_on(at(0, 13, 30)) and s.is_on(at(4, 14))
    assert not s.is_on(at(5, 11)) and s.is_on(at(5, 19, 59)) and s.is_on(at(6, 12))
    assert not s.is_on(at(0, 19))
    assert Schedule(["mon-fri 10:00-18:00", "sat 12:00-16:00"]).is_on(at(5, 13))
    assert Schedule("tue,thu 09:00-10:00,15:00-16:00").is_on(at(3, 15, 30))
    assert not Schedule("tue,thu 09:00-10:00,15:00-16:00").is_on(at(2, 15, 30))


def test_a_range_past_midnight_belongs_to_the_day_it_starts():
    s = Schedule("fri,sat 20:00-02:00")
    assert not s.is_on(at(4, 19, 59))
    assert s.is_on(at(4, 23)) and s.is_on(at(5, 1, 59))   # Friday night into Saturday
    assert not s.is_on(at(5, 2)) and not s.is_on(at(5, 12))
    assert s.is_on(at(6, 1)) and not s.is_on(at(6, 20))  # Saturday night into Sunday only
    assert not s.is_on(at(3, 1))                          # not Thursday night
    sunday = Schedule("sun 22:00-03:00")                  # ... across the week's end
    assert sunday.is_on(at(6, 23)) and sunday.is_on(at(7, 2)) and not sunday.is_on(at(7, 3))
    assert sunday.is_on(at(0, 2)) and not sunday.is_on(at(1, 2))


def test_day_ranges_wrap_and_daily_and_all_day():
    assert [Schedule("fri-mon 10:00-11:00").is_on(at(d, 10)) for d in range(7)] == \
        [True, False, False, False, True, True, True]
    assert all(Schedule("daily 00:00-24:00").is_on(at(d, h)) for d in range(7) for h in range(24))
    assert Schedule("Monday 10:00-11:00").is_on(at(0, 10))


def test_next_change():
    s = Schedule("mon-fri 10:00-18:00")
    assert s.next_change(at(0, 9, 30)) == at(0, 10)
    assert s.next_change(at(0, 12, 0) + timedelta(seconds=30)) == at(0, 18)
    assert s.next_change(at(4, 18)) == at(7, 10)          # Friday evening: Monday morning
    assert s.seconds_to_change(at(0, 9, 59, ) + timedelta(seconds=30)) == 30.0
    adjacent = Schedule("10:00-12:00 12:00-14:00")        # touching ranges: one long stretch
    assert adjacent.next_change(at(2, 11)) == at(2, 14)
    assert Schedule("00:00-24:00").next_change(at(3, 5)) is None


@pytest.mark.parametrize("text", ["mon-fri 10:00-18:00; sat,sun 12:00-20:00",
                                  "fri,sat 20:00-02:00; tue 06:30-07:15 07:20-08:00",
                                  "sun 22:00-03:00"])
def test_next_change_agrees_with_a_minute_by_minute_scan(text):
    s = Schedule(text)
    week = [s.is_on(at(0, 0, m)) for m in range(7 * 1440)]
    for m in range(0, 7 * 1440, 37):
        nxt = s.next_change(at(0, 0, m))
        k = next(k for k in range(1, 7 * 1440 + 1) if week[(m + k) % (7 * 1440)] != week[m])
        assert nxt == at(0, 0, m + k), (text, m)


@pytest.mark.parametrize("bad, message", [
    ("", "empty"), ("mon-fri", "no hours"), ("10-18", "not a time range"),
    ("25:00-26:00", "not a valid time"), ("10:00-10:00", "is empty"),
    ("funday 10:00-11:00", "not a day"), ("10:00-11:00 mon", "days must come before"),
    ("10:60-11:00", "not a valid time"), ("10:00-24:30", "not a valid time"),
])
def test_bad_schedules_are_one_line_errors(bad, message):
    with pytest.raises(ScheduleError, match=message) as info:
        Schedule(bad)
    assert "\n" not in str(info.value)
