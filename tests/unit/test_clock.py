"""The journal's stamps: ISO text and microseconds of one moment, the text made once a second."""

from datetime import UTC, datetime, timedelta, timezone

from netrun.clock import Stamps, iso
from netrun.historyrows import iso_of, micros


def test_a_stamp_is_iso_text_and_micros_of_the_same_moment():
    stamps = Stamps()
    moment = datetime(2026, 1, 2, 3, 4, 5, 7, UTC)
    assert stamps.of(moment) == ("2026-01-02T03:04:05.000007+00:00", micros(moment))
    later = moment + timedelta(microseconds=999_993)  # the next second: the cached text must not be reused
    text, us = stamps.of(later)
    assert text == iso(later) == "2026-01-02T03:04:06.000000+00:00"
    assert us == micros(later) and iso_of(us) == text


def test_a_stamp_of_another_zone_or_a_naive_time_is_utc():
    stamps = Stamps()
    east = datetime(2026, 1, 2, 5, 4, 5, 123456, timezone(timedelta(hours=2)))
    assert stamps.of(east) == (iso(east), micros(east.astimezone(UTC)))
    assert stamps.of(east)[0] == "2026-01-02T03:04:05.123456+00:00"
    naive = datetime(2026, 1, 2, 3, 4, 5, 9)
    assert stamps.of(naive)[0] == "2026-01-02T03:04:05.000009+00:00"
