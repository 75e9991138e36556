"""Event time as the job tracks it: per source, bounded out-of-orderness, idle sources ignored."""

from __future__ import annotations

from schemas.event_time import UNKNOWN, EventClock, WatermarkMerge

MINUTE = 60_000
NOW = 100_000 * MINUTE  # processing time: the events below lie in the past, as in a replay


def clock() -> EventClock:
    return EventClock(out_of_orderness_ms=MINUTE, idleness_ms=10_000)


def test_event_time_advances_while_another_source_is_idle() -> None:
    time = clock()
    time.observe("raw.wms", 1_000 * MINUTE, now_ms=NOW)
    time.observe("raw.orders.tmall", 500 * MINUTE, now_ms=NOW)
    assert time.watermark(now_ms=NOW + 1_000) == 499 * MINUTE  # the slower source holds time back while it speaks
    time.observe("raw.wms", 2_000 * MINUTE, now_ms=NOW + 20_000)  # tmall has been silent for 20 s of processing time
    assert time.is_idle("raw.orders.tmall", now_ms=NOW + 20_000)
    assert time.watermark(now_ms=NOW + 20_000) == 1_999 * MINUTE


def test_watermark_never_goes_back_when_an_idle_source_wakes_up_behind_it() -> None:
    time = clock()
    time.observe("raw.wms", 2_000 * MINUTE, now_ms=NOW)
    assert time.watermark(now_ms=NOW) == 1_999 * MINUTE
    time.observe("raw.orders.tmall", 10 * MINUTE, now_ms=NOW + 1_000)
    assert time.watermark(now_ms=NOW + 1_000) == 1_999 * MINUTE


def test_late_event_does_not_move_its_source_back() -> None:
    time = clock()
    time.observe("raw.wms", 100 * MINUTE, now_ms=NOW)
    time.observe("raw.wms", 50 * MINUTE, now_ms=NOW)
    assert time.source_watermark("raw.wms") == 99 * MINUTE


def test_an_event_stamped_far_ahead_of_the_wall_clock_does_not_make_the_stream_late() -> None:
    time = clock()
    now = NOW
    time.observe("raw.wms", now - MINUTE, now_ms=now)
    time.observe("raw.wms", now + 60 * MINUTE, now_ms=now)  # a clock an hour fast
    assert time.watermark(now_ms=now) == now - 2 * MINUTE


def test_time_stands_still_while_every_source_is_idle() -> None:
    time = clock()
    time.observe("raw.wms", 100 * MINUTE, now_ms=NOW)
    assert time.watermark(now_ms=NOW) == 99 * MINUTE
    assert time.watermark(now_ms=NOW + 1_000_000) == 99 * MINUTE
    assert clock().watermark(now_ms=NOW) == UNKNOWN


def test_downstream_time_is_that_of_the_slowest_upstream_instance() -> None:
    merge = WatermarkMerge(idleness_ms=10_000)
    assert merge.update("normalize-0", 500, now_ms=NOW) == 500
    assert merge.update("normalize-1", 300, now_ms=NOW) == 500  # never back
    assert merge.update("normalize-0", 900, now_ms=NOW) == 500
    assert merge.update("normalize-1", 800, now_ms=NOW) == 800


def test_a_quiet_upstream_instance_does_not_hold_downstream_time_back() -> None:
    merge = WatermarkMerge(idleness_ms=10_000)
    merge.update("vehicles-0", 100, now_ms=NOW)
    assert merge.update("normalize-0", 900, now_ms=NOW + 1_000) == 100
    assert merge.update("normalize-0", 950, now_ms=NOW + 20_000) == 950
