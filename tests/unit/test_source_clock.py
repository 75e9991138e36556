"""A reader's clock told by Kafka: which partitions it expects, where a restored reader starts, and what
happens when Kafka does not answer. Kafka is replaced by a stand-in here; tests/integration/test_simulated_day.py
and test_order_health.py run it on the real broker."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.kafka import KafkaError, TopicPartition
from jobs.source_clock import KafkaInput, PartitionClock
from schemas.event_time import UNKNOWN, EventClock

NOW = 6_000_000_000_000
TOPICS = ("raw.orders.tmall", "raw.wms")


class StandInProbe:
    """Two partitions per topic, each holding 10 records, none committed; or no answer at all when `down`."""

    def __init__(self) -> None:
        self.down = False
        self.asked = 0
        self.committed: dict[TopicPartition, int] = {}

    def start_offsets(self, topics: tuple[str, ...], group: str, start_from: str) -> dict[TopicPartition, int]:
        return {**self._answer(topics, 0), **self.committed}

    def end_offsets(self, topics: tuple[str, ...]) -> dict[TopicPartition, int]:
        return self._answer(topics, 10)

    def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        return self.committed

    def close(self) -> None:
        pass

    def _answer(self, topics: tuple[str, ...], offset: int) -> dict[TopicPartition, int]:
        self.asked += 1
        if self.down:
            raise KafkaError("no broker answered")
        return {TopicPartition(topic, p): offset for topic in topics for p in (0, 1)}


def reader(probe: StandInProbe, subtask: int = 0) -> PartitionClock:
    source = KafkaInput("127.0.0.1:9092", TOPICS, "group", "earliest", group_of_subtask=(1, 0))
    stand_in: Any = probe
    clock = EventClock(out_of_orderness_ms=60_000, idleness_ms=10_000)
    return PartitionClock(source, subtask, clock, lambda _: stand_in)


def test_a_reader_expects_the_partitions_of_its_group_from_the_start_and_fetches_their_ends() -> None:
    clock = reader(StandInProbe(), subtask=0)
    clock.fetch_offsets(NOW)
    assert sorted(clock.clock.sources) == ["raw.orders.tmall/1", "raw.wms/1"]
    assert {source.end for source in clock.clock.sources.values()} == {10}
    assert clock.owns(3) and not clock.owns(2)
    clock.clock.observe("raw.wms/1", 100 * 60_000, NOW)
    assert clock.clock.watermark(NOW) == UNKNOWN  # tmall's partition 1 has 10 records still to read


def test_a_partition_not_read_yet_starts_where_its_group_committed_last_once_kafka_says_so() -> None:
    probe = StandInProbe()
    clock = reader(probe)
    clock.fetch_offsets(NOW)  # restored from a checkpoint whose offsets are not committed yet
    clock.clock.observe("raw.wms/1", 100 * 60_000, NOW)
    assert not clock.clock.is_idle("raw.orders.tmall/1", NOW + 2_000)
    probe.committed = {TopicPartition("raw.orders.tmall", 1): 10}  # committed with that checkpoint: read to its end
    clock.fetch_offsets(NOW + 2_000)
    assert clock.clock.is_idle("raw.orders.tmall/1", NOW + 2_000)
    assert clock.clock.watermark(NOW + 2_000) == 99 * 60_000


def test_kafka_not_answering_leaves_silence_to_decide_and_is_asked_again_a_second_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = StandInProbe()
    clock = reader(probe)
    clock.fetch_offsets(NOW)
    clock.clock.read("raw.wms/1", 9, NOW)
    clock.clock.observe("raw.wms/1", 100 * 60_000, NOW)
    probe.down = True
    for second in range(11, 14):
        clock.fetch_offsets(NOW + second * 1_000)
    assert probe.asked == 2 + 3 and len(caplog.records) == 1  # asked each second, told once
    assert clock.clock.is_idle("raw.orders.tmall/1", NOW + 13_000)  # never read, 10 records: silence decides
    probe.down = False
    clock.fetch_offsets(NOW + 14_000)
    assert not clock.clock.is_idle("raw.orders.tmall/1", NOW + 14_000)
    assert "again" in caplog.records[-1].message


def test_a_reader_is_idle_everywhere_only_once_kafka_told_it_its_partitions_and_they_are_read() -> None:
    probe = StandInProbe()
    probe.down = True
    clock = reader(probe)
    clock.fetch_offsets(NOW)
    assert not clock.clock.sources and not clock.is_idle_everywhere(NOW)  # a backlog may wait where it cannot see
    assert clock.is_idle_everywhere(NOW + clock.clock.stall_ms + 1)  # or Kafka may never tell: silence decides
    probe.down = False
    clock.fetch_offsets(NOW + 2_000)
    assert not clock.is_idle_everywhere(NOW + 2_000)  # 10 records wait in each of its partitions
    for partition in ("raw.orders.tmall/1", "raw.wms/1"):
        clock.clock.read(partition, 9, NOW + 3_000)
    clock.fetch_offsets(NOW + 14_000)
    assert clock.is_idle_everywhere(NOW + 14_000)
