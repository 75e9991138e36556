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
    assert merge.update("normalize-0", 500, now_ms=NOW, idle=False) == 500
    assert merge.update("normalize-1", 300, now_ms=NOW, idle=False) == 500  # never back
    assert merge.update("normalize-0", 900, now_ms=NOW, idle=False) == 500
    assert merge.update("normalize-1", 800, now_ms=NOW, idle=False) == 800


def test_an_upstream_idle_everywhere_does_not_hold_downstream_time_back() -> None:
    merge = WatermarkMerge(idleness_ms=10_000)
    assert merge.update("normalize-0", UNKNOWN, now_ms=NOW, idle=True) == UNKNOWN  # it read only legs
    assert merge.is_idle_everywhere(now_ms=NOW)
    assert merge.update("normalize-1", 900, now_ms=NOW + 1_000, idle=False) == 900
    assert merge.update("normalize-0", UNKNOWN, now_ms=NOW + 2_000, idle=True) == 900
    assert not merge.is_idle_everywhere(now_ms=NOW + 2_000)
    merge.update("normalize-0", 950, now_ms=NOW + 3_000, idle=False)  # reading again, and telling time
    assert merge.update("normalize-1", 1_000, now_ms=NOW + 4_000, idle=False) == 950


def test_a_quiet_upstream_instance_does_not_hold_downstream_time_back() -> None:
    merge = WatermarkMerge(idleness_ms=10_000)
    merge.update("vehicles-0", 100, now_ms=NOW, idle=False)
    assert merge.update("normalize-0", 900, now_ms=NOW + 1_000, idle=False) == 100
    assert merge.update("normalize-0", 950, now_ms=NOW + 20_000, idle=False) == 950


def test_a_partition_expected_but_not_read_yet_holds_time_back_until_it_is_read() -> None:
    time = clock()
    time.expect("raw.orders.tmall/0", position=0, now_ms=NOW)
    time.ends({"raw.orders.tmall/0": 500}, now_ms=NOW)
    time.observe("raw.wms/0", 2_000 * MINUTE, now_ms=NOW + 1_000)  # the warehouse's partition is read first
    assert time.watermark(now_ms=NOW + 30_000) == UNKNOWN  # silent far past the idleness timeout: still waited for
    time.read("raw.orders.tmall/0", 0, now_ms=NOW + 40_000)
    time.observe("raw.orders.tmall/0", 500 * MINUTE, now_ms=NOW + 40_000)
    assert time.watermark(now_ms=NOW + 40_000) == 499 * MINUTE


def test_a_partition_found_empty_holds_no_one_back() -> None:
    time = clock()
    time.expect("raw.orders.pos/1", position=7, now_ms=NOW)  # resumed where it had reached its end
    time.ends({"raw.orders.pos/1": 7}, now_ms=NOW)
    time.observe("raw.wms/1", 100 * MINUTE, now_ms=NOW)
    assert time.watermark(now_ms=NOW) == 99 * MINUTE


def test_a_silent_partition_with_records_waiting_is_not_idle_until_read_to_its_end() -> None:
    time = clock()
    for source, at in (("raw.wms/0", 100), ("raw.orders.tmall/0", 50)):
        time.read(source, 9, now_ms=NOW)
        time.observe(source, at * MINUTE, now_ms=NOW)
    later = NOW + 30_000  # the reader drains the warehouse's fetch first, for longer than the idleness timeout
    time.read("raw.wms/0", 10, now_ms=later)
    time.observe("raw.wms/0", 900 * MINUTE, now_ms=later)
    assert time.wants_ends(later)
    time.ends({"raw.wms/0": 5_000, "raw.orders.tmall/0": 5_000}, now_ms=later)
    assert not time.is_idle("raw.orders.tmall/0", later)
    assert time.watermark(now_ms=later) == 49 * MINUTE
    time.read("raw.orders.tmall/0", 4_999, now_ms=later + 1)  # read to its end, then silent
    time.observe("raw.orders.tmall/0", 60 * MINUTE, now_ms=later + 1)
    time.observe("raw.wms/0", 950 * MINUTE, now_ms=later + 20_000)
    assert time.wants_ends(later + 20_000)  # the end offset was fetched before the last read: not proof
    assert not time.is_idle("raw.orders.tmall/0", later + 20_000)
    time.ends({"raw.orders.tmall/0": 5_000}, now_ms=later + 20_000)
    assert time.is_idle("raw.orders.tmall/0", later + 20_000)
    assert time.watermark(now_ms=later + 20_000) == 949 * MINUTE


def test_a_partition_stuck_behind_for_the_stall_timeout_stops_holding_time_back() -> None:
    time = clock()
    time.expect("raw.signals/0", position=0, now_ms=NOW)
    time.ends({"raw.signals/0": 3}, now_ms=NOW)  # records its reader never gets to
    time.observe("raw.wms/0", 100 * MINUTE, now_ms=NOW + 290_000)
    assert time.watermark(now_ms=NOW + 290_000) == UNKNOWN
    time.observe("raw.wms/0", 100 * MINUTE, now_ms=NOW + 301_000)
    assert time.watermark(now_ms=NOW + 301_000) == 99 * MINUTE


def test_the_first_read_says_where_reading_started_whatever_was_expected() -> None:
    time = clock()
    time.expect("raw.wms/0", position=5_000, now_ms=NOW)  # the group had committed 5000; the reader starts at 0
    time.ends({"raw.wms/0": 5_000}, now_ms=NOW)
    time.observe("raw.orders.tmall/0", 500 * MINUTE, now_ms=NOW)
    time.read("raw.wms/0", 0, now_ms=NOW)
    time.observe("raw.wms/0", 100 * MINUTE, now_ms=NOW)
    time.ends({"raw.wms/0": 5_000}, now_ms=NOW + 15_000)
    time.observe("raw.orders.tmall/0", 900 * MINUTE, now_ms=NOW + 15_000)
    assert not time.is_idle("raw.wms/0", NOW + 15_000)  # 4,999 records still to read
    assert time.watermark(now_ms=NOW + 15_000) == 99 * MINUTE


def test_an_end_offset_older_than_the_idleness_timeout_proves_nothing() -> None:
    time = clock()
    time.read("raw.wms/0", 99, now_ms=NOW)
    time.observe("raw.wms/0", 100 * MINUTE, now_ms=NOW)
    time.ends({"raw.wms/0": 100}, now_ms=NOW + 1)  # caught up then; records may have come since
    time.observe("raw.orders.tmall/0", 900 * MINUTE, now_ms=NOW + 30_000)
    assert time.wants_ends(NOW + 30_000)
    assert not time.is_idle("raw.wms/0", NOW + 30_000)
    time.ends({"raw.wms/0": 100}, now_ms=NOW + 30_000)
    assert time.is_idle("raw.wms/0", NOW + 30_000)


def test_with_end_offsets_out_of_reach_silence_alone_decides() -> None:
    time = clock()
    time.expect("raw.signals/0", position=0, now_ms=NOW)
    time.read("raw.wms/0", 9, now_ms=NOW)
    time.observe("raw.wms/0", 100 * MINUTE, now_ms=NOW)
    time.ends({"raw.signals/0": 3, "raw.wms/0": 500}, now_ms=NOW)
    time.forget_ends()  # Kafka stopped answering
    time.observe("raw.orders.tmall/0", 900 * MINUTE, now_ms=NOW + 11_000)
    assert time.is_idle("raw.signals/0", NOW + 11_000) and time.is_idle("raw.wms/0", NOW + 11_000)
    assert time.watermark(now_ms=NOW + 11_000) == 899 * MINUTE


def test_a_partition_read_without_event_times_holds_no_one_back() -> None:
    time = clock()
    time.read("orderscope.eta_legs/0", 41, now_ms=NOW)  # legs carry no event time of their own
    time.observe("raw.wms/0", 100 * MINUTE, now_ms=NOW)
    assert time.watermark(now_ms=NOW) == 99 * MINUTE


def test_a_clock_is_idle_everywhere_once_no_source_that_tells_time_is_active() -> None:
    time = clock()
    time.expect("raw.orders.tmall/0", position=0, now_ms=NOW)
    time.ends({"raw.orders.tmall/0": 5}, now_ms=NOW)
    assert not time.is_idle_everywhere(now_ms=NOW)  # records wait in a partition not read yet
    time.read("raw.orders.tmall/0", 4, now_ms=NOW + 1_000)
    time.observe("raw.orders.tmall/0", 500 * MINUTE, now_ms=NOW + 1_000)
    assert not time.is_idle_everywhere(now_ms=NOW + 1_000) and time.watermark(now_ms=NOW + 1_000) == 499 * MINUTE
    time.read("orderscope.eta_legs/0", 0, now_ms=NOW + 12_000)  # legs tell no time
    time.ends({"raw.orders.tmall/0": 5}, now_ms=NOW + 12_000)
    assert time.is_idle_everywhere(now_ms=NOW + 12_000)
    assert time.watermark(now_ms=NOW + 12_000) == 499 * MINUTE
