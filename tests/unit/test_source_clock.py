"""A reader's clock told by Kafka: which partitions it expects, and what happens when Kafka does not answer.
Kafka is replaced by a stand-in here; tests/integration/test_simulated_day.py runs it on the real broker."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.kafka import KafkaError, TopicPartition
from jobs.source_clock import KafkaInput, PartitionClock
from schemas.event_time import UNKNOWN, EventClock

NOW = 6_000_000_000_000
TOPICS = ("raw.orders.tmall", "raw.wms")


class StandInProbe:
    """Two partitions per topic, each holding 10 records, none read; or no answer at all when `down`."""

    def __init__(self) -> None:
        self.down = False
        self.asked = 0

    def start_offsets(self, topics: tuple[str, ...], group: str, start_from: str) -> dict[TopicPartition, int]:
        return self._answer(topics, 0)

    def end_offsets(self, topics: tuple[str, ...]) -> dict[TopicPartition, int]:
        return self._answer(topics, 10)

    def close(self) -> None:
        pass

    def _answer(self, topics: tuple[str, ...], offset: int) -> dict[TopicPartition, int]:
        self.asked += 1
        if self.down:
            raise KafkaError("no broker answered")
        return {TopicPartition(topic, p): offset for topic in topics for p in (0, 1)}


def reader(probe: StandInProbe) -> PartitionClock:
    source = KafkaInput("127.0.0.1:9092", TOPICS, "group", "earliest", partition_groups=2)
    stand_in: Any = probe
    return PartitionClock(source, EventClock(out_of_orderness_ms=60_000, idleness_ms=10_000), lambda _: stand_in)


def test_a_reader_expects_the_partitions_of_its_group_and_fetches_their_ends() -> None:
    probe = StandInProbe()
    clock = reader(probe)
    clock.expect_group_of(1, NOW)
    assert sorted(clock.clock.sources) == ["raw.orders.tmall/1", "raw.wms/1"]
    assert {source.end for source in clock.clock.sources.values()} == {10}
    clock.clock.observe("raw.wms/1", 100 * 60_000, NOW)
    assert clock.clock.watermark(NOW) == UNKNOWN  # tmall's partition 1 has 10 records still to read


def test_kafka_not_answering_leaves_silence_to_decide_and_is_asked_again_a_second_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = StandInProbe()
    clock = reader(probe)
    clock.expect_group_of(0, NOW)
    clock.clock.read("raw.wms/0", 9, NOW)
    clock.clock.observe("raw.wms/0", 100 * 60_000, NOW)
    probe.down = True
    for second in range(11, 14):
        clock.fetch_ends(NOW + second * 1_000)
    assert probe.asked == 2 + 3 and len(caplog.records) == 1  # asked each second, told once
    assert clock.clock.is_idle("raw.orders.tmall/0", NOW + 13_000)  # never read, 10 records: silence decides
    probe.down = False
    clock.fetch_ends(NOW + 14_000)
    assert not clock.clock.is_idle("raw.orders.tmall/0", NOW + 14_000)
    assert "again" in caplog.records[-1].message
