"""The system clock's stamp: the journal's ISO text and microseconds, from one reading."""

from datetime import UTC, datetime

from freezegun import freeze_time

from netrun.clock import SystemClock, iso
from netrun.historyrows import iso_of, micros


def test_stamp_text_and_micros_are_one_reading_in_iso_form():
    clock = SystemClock()
    before = micros(clock.now())
    text, us = clock.stamp()
    after = micros(clock.now())
    assert before <= us <= after
    assert text == iso_of(us)  # the text is the same moment as the number, in iso()'s form
    assert datetime.fromisoformat(text) == datetime.fromtimestamp(us / 1_000_000, UTC).replace(
        microsecond=us % 1_000_000)


def test_stamp_across_seconds_and_frozen_time():
    clock = SystemClock()
    with freeze_time("2026-01-02T03:04:05.000007+00:00") as frozen:
        assert clock.stamp() == ("2026-01-02T03:04:05.000007+00:00", micros(datetime(2026, 1, 2, 3, 4, 5, 7, UTC)))
        frozen.tick(1.5)  # the second changes: the cached prefix must not be reused
        text, us = clock.stamp()
        assert text == "2026-01-02T03:04:06.500007+00:00" == iso(clock.now())
        assert us == micros(clock.now())
