"""Event time over Kafka partitions: an EventClock (schemas/event_time.py) told, from Kafka itself,
which partitions a reader owns, where it starts on each, and where each ends, so that it can tell a
partition with nothing left to read from one whose records are still waiting behind another's."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from connectors.kafka import KafkaError, OffsetProbe, TopicPartition
from schemas.event_time import UNKNOWN, EventClock, split_of

log = logging.getLogger(__name__)
ASK_EVERY_MS = 1_000  # Kafka is asked for offsets at most this often (one request each time)
ASK_TIMEOUT_MS = 2_000  # the reader waits no longer for an answer: the job's records wait meanwhile
Answer = TypeVar("Answer")


@dataclass(frozen=True)
class KafkaInput:
    """The topics a reader consumes, and how their partitions are split between readers: by partition
    number modulo `partition_groups` (the job's micro-batch query groups them so), each group read by one."""

    bootstrap_servers: str
    topics: tuple[str, ...]
    consumer_group: str
    start_from: str  # earliest | latest, for partitions the group has committed nothing on
    partition_groups: int = 1


class PartitionClock:
    """A reader's clock. Its partition group is expected from its first record on; end offsets are
    fetched while a silent partition may be idle. With Kafka not answering, silence alone tells idle
    partitions (as before offsets were known), and Kafka is asked again a second later."""

    def __init__(
        self, source: KafkaInput, clock: EventClock, connect: Callable[[str], OffsetProbe] | None = None
    ) -> None:
        self.source = source
        self.clock = clock
        self._connect = connect or partial(OffsetProbe, timeout_ms=ASK_TIMEOUT_MS)
        self._probe: OffsetProbe | None = None
        self._groups: set[int] = set()
        self._asked_at_ms = UNKNOWN
        self._failing = False

    def expect_group_of(self, partition: int, now_ms: int) -> None:
        """The partitions of the group `partition` belongs to are this reader's: each holds time back until
        read or found empty."""
        groups = self.source.partition_groups
        if (group := partition % groups) in self._groups or (starts := self._ask(now_ms, self._starts)) is None:
            return
        self._groups.add(group)
        for tp, start in starts.items():
            if tp.partition % groups == group:
                self.clock.expect(split_of(tp.topic, tp.partition), start, now_ms)
        self._asked_at_ms = UNKNOWN  # and where they end, at once
        self.fetch_ends(now_ms)

    def fetch_ends(self, now_ms: int) -> None:
        """Fetch the partitions' end offsets if one could be found idle by them (at most once a second)."""
        if self.clock.wants_ends(now_ms) and (ends := self._ask(now_ms, self._ends)) is not None:
            self.clock.ends({split_of(tp.topic, tp.partition): end for tp, end in ends.items()}, now_ms)

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()

    def _starts(self, probe: OffsetProbe) -> dict[TopicPartition, int]:
        return probe.start_offsets(self.source.topics, self.source.consumer_group, self.source.start_from)

    def _ends(self, probe: OffsetProbe) -> dict[TopicPartition, int]:
        return probe.end_offsets(self.source.topics)

    def _ask(self, now_ms: int, question: Callable[[OffsetProbe], Answer]) -> Answer | None:
        if now_ms - self._asked_at_ms < ASK_EVERY_MS:
            return None
        self._asked_at_ms = now_ms
        try:
            self._probe = self._probe or self._connect(self.source.bootstrap_servers)
            answer = question(self._probe)
        except KafkaError as error:
            self.clock.forget_ends()
            if not self._failing:
                log.warning("Kafka does not tell its offsets (%s): until it does, a silent partition counts as "
                            "idle after the idleness timeout, records waiting or not", error)  # fmt: skip
            self._failing = True
            return None
        if self._failing:
            log.warning("Kafka tells its offsets again: a silent partition is idle once read to its end")
        self._failing = False
        return answer
