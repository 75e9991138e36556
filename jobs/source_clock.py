"""Event time over Kafka partitions: an EventClock (schemas/event_time.py) told, from Kafka itself,
which partitions a reader owns, where it starts on each, and where each ends, so that it can tell a
partition with nothing left to read from one whose records are still waiting behind another's."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from connectors.kafka import KafkaError, OffsetProbe, TopicPartition
from schemas.event_time import UNKNOWN, EventClock, split_of

log = logging.getLogger(__name__)
ASK_EVERY_MS = 1_000  # Kafka is asked for offsets at most this often (one or two requests each time)
ASK_TIMEOUT_MS = 2_000  # the reader waits no longer for an answer: the job's records wait meanwhile
Answer = TypeVar("Answer")


@dataclass(frozen=True)
class KafkaInput:
    """The topics the job reads, and how their partitions are split between its readers: by partition
    number modulo the number of readers (the job's micro-batch query groups them so), reader i reading
    group group_of_subtask[i]."""

    bootstrap_servers: str
    topics: tuple[str, ...]
    consumer_group: str
    start_from: str  # earliest | latest, where a reader starts on partitions its group has committed nothing on
    group_of_subtask: tuple[int, ...] = (0,)


class PartitionClock:
    """The clock of reader `subtask`. Its partitions are expected from the start; end offsets are fetched
    while a silent partition may be idle. A partition not read yet starts where its consumer group last
    committed, or later: a restored reader resumes at its checkpoint, whose offsets are committed only once
    it completed, so they are read again until the partition is read. With Kafka not answering, silence
    alone tells idle partitions (as before offsets were known), and Kafka is asked again a second later."""

    def __init__(
        self, source: KafkaInput, subtask: int, clock: EventClock, connect: Callable[[str], OffsetProbe] | None = None
    ) -> None:
        self.source = source
        self.clock = clock
        self._group = source.group_of_subtask[subtask]
        self._connect = connect or partial(OffsetProbe, timeout_ms=ASK_TIMEOUT_MS)
        self._probe: OffsetProbe | None = None
        self._started = False
        self._first_asked_ms = UNKNOWN
        self._asked_at_ms = UNKNOWN
        self._failing = False

    def owns(self, partition: int) -> bool:
        """Whether a partition is this reader's: a batch of another group (from window state restored from
        another parallelism) is normalized but tells this clock nothing."""
        return partition % len(self.source.group_of_subtask) == self._group

    def is_idle_everywhere(self, now_ms: int) -> bool:
        """Whether every partition it reads is idle or tells no time (EventClock.is_idle_everywhere); not before it
        knows its partitions, as a backlog may wait in one, unless Kafka has not told them for the clock's stall
        timeout (then silence alone decides, as it does for a stuck reader)."""
        known = self._started or (
            self._first_asked_ms != UNKNOWN and now_ms - self._first_asked_ms > self.clock.stall_ms
        )
        return known and self.clock.is_idle_everywhere(now_ms)

    def fetch_offsets(self, now_ms: int) -> None:
        """Where its partitions start (until known) and end, if that could tell one idle; at most once a second."""
        if self._first_asked_ms == UNKNOWN:
            self._first_asked_ms = now_ms
        if not self._started:
            self._start(now_ms)
        elif self.clock.wants_ends(now_ms) and (offsets := self._ask(now_ms, self._ends)) is not None:
            ends, committed = offsets
            for source, position in committed.items():
                self.clock.starts_at_least(source, position)
            self.clock.ends(ends, now_ms)

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()

    def _start(self, now_ms: int) -> None:
        if (starts := self._ask(now_ms, self._starts)) is None:
            return
        self._started = True
        for tp, start in starts.items():
            if self.owns(tp.partition):
                self.clock.expect(split_of(tp.topic, tp.partition), start, now_ms)
        self._asked_at_ms = UNKNOWN  # and where they end, at once
        self.fetch_offsets(now_ms)

    def _starts(self, probe: OffsetProbe) -> dict[TopicPartition, int]:
        return probe.start_offsets(self.source.topics, self.source.consumer_group, self.source.start_from)

    def _ends(self, probe: OffsetProbe) -> tuple[dict[str, int], Mapping[str, int]]:
        """End offsets, and the committed offsets of partitions not read yet (none once all are read)."""
        ends = {split_of(tp.topic, tp.partition): end for tp, end in probe.end_offsets(self.source.topics).items()}
        if not self.clock.unread():
            return ends, {}
        committed = probe.committed_offsets(self.source.consumer_group)
        return ends, {split_of(tp.topic, tp.partition): offset for tp, offset in committed.items()}

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
