"""Event time, as the job's operators track it while they work in micro-batches.

Each source (a raw topic's partition) has its newest event time; its watermark trails it by the
allowed out-of-orderness. The combined watermark is the smallest watermark of the
sources that are not idle: a source silent for longer than the idleness timeout
(in processing time) holds no one back, so a quiet topic cannot stall time, also
on a replayed recording where a day passes in seconds. Event times ahead of the
wall clock by more than the allowed skew count for nothing (one event stamped an
hour ahead must not make the rest of the stream late). Late events are still
applied to state; lateness is only a fact the next stages may act on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

UNKNOWN = -(2**62)  # no event seen yet: earlier than any real time


def now_ms() -> int:
    """Processing time, in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def split_of(topic: str, partition: int) -> str:
    """What event time is tracked per: a topic's partition, as Flink tracks a split. A topic's partitions
    are read at their own pace, and one read ahead must not make the others' events late."""
    return f"{topic}/{partition}"


@dataclass
class SourceClock:
    newest_ms: int = UNKNOWN
    heard_at_ms: int = 0  # processing time of the last event


@dataclass
class EventClock:
    out_of_orderness_ms: int
    idleness_ms: int
    max_skew_ms: int = 300_000
    sources: dict[str, SourceClock] = field(default_factory=dict)
    _combined_ms: int = UNKNOWN

    def observe(self, source: str, at_ms: int, now_ms: int) -> None:
        clock = self.sources.setdefault(source, SourceClock())
        clock.heard_at_ms = now_ms
        if at_ms <= now_ms + self.max_skew_ms and at_ms > clock.newest_ms:
            clock.newest_ms = at_ms

    def is_idle(self, source: str, now_ms: int) -> bool:
        return now_ms - self.sources[source].heard_at_ms > self.idleness_ms

    def source_watermark(self, source: str) -> int:
        newest = self.sources[source].newest_ms
        return newest - self.out_of_orderness_ms if newest != UNKNOWN else UNKNOWN

    def watermark(self, now_ms: int) -> int:
        """The smallest watermark of the active sources; it stands still while every source is
        idle and never goes back, even when an idle source wakes up behind it."""
        active = [
            self.source_watermark(source)
            for source in self.sources
            if not self.is_idle(source, now_ms) and self.sources[source].newest_ms != UNKNOWN
        ]
        if active:
            self._combined_ms = max(self._combined_ms, min(active))
        return self._combined_ms


@dataclass
class WatermarkMerge:
    """Downstream of several parallel upstream instances: time is as far as the slowest of those that
    spoke within the idleness timeout (processing time), so a quiet upstream holds no one back."""

    idleness_ms: int
    _by_upstream: dict[str, tuple[int, int]] = field(default_factory=dict)  # watermark, heard at
    _combined_ms: int = UNKNOWN

    def update(self, upstream: str, watermark_ms: int, now_ms: int) -> int:
        previous = self._by_upstream.get(upstream, (UNKNOWN, now_ms))[0]
        self._by_upstream[upstream] = (max(previous, watermark_ms), now_ms)
        active = [mark for mark, heard in self._by_upstream.values() if now_ms - heard <= self.idleness_ms]
        self._combined_ms = max(self._combined_ms, min(active))
        return self._combined_ms
