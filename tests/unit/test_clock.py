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


def test_a_stamp_of_micros_is_the_stamp_of_the_same_moment():
    stamps, by_moment = Stamps(), Stamps()
    moment = datetime(2026, 1, 2, 3, 4, 5, 999_999, UTC)
    for step in (0, 1, 7, 1_000_000, 86_400_000_000):  # the same second, the next, the next day
        later = moment + timedelta(microseconds=step)
        assert stamps.of_micros(micros(later)) == by_moment.of(later) == (iso(later), micros(later))


def test_the_journal_stamps_the_system_clock_from_time_ns(tmp_path):
    """The system clock's stamp is read from time.time_ns (which freezegun fakes like datetime.now)."""
    import apsw
    from freezegun import freeze_time

    from netrun.clock import SystemClock
    from netrun.journal import Journal

    journal = Journal(apsw.Connection(str(tmp_path / "j.db")), SystemClock())
    with freeze_time("2026-03-04 05:06:07.123456"):
        assert journal.stamp() == ("2026-03-04T05:06:07.123456+00:00", micros(datetime(2026, 3, 4, 5, 6, 7, 123456, UTC)))
    text, _ = journal.stamp()
    assert abs(datetime.fromisoformat(text) - datetime.now(UTC)) < timedelta(seconds=5)
