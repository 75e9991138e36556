"""Event time, as the job's operators track it while they work in micro-batches.

Each source (a raw topic's partition) has its newest event time; its watermark trails it by the
allowed out-of-orderness. The combined watermark is the smallest watermark of the
sources that are not idle. Event times ahead of the wall clock by more than the allowed skew count
for nothing (one event stamped an hour ahead must not make the rest of the stream late). Late events
are still applied to state; lateness is only a fact the next stages may act on.

Idle means nothing left to read, not merely silent. A Kafka reader drains one partition's fetch
before the next, so on a replay under backpressure a partition with records waiting can go unread
for most of a minute; it must hold time back meanwhile, or the records read after it are all late.
So a source is idle once it has been silent for the idleness timeout (processing time) and its
read position has reached the partition's end offset, fetched since. A partition expected but not
read yet holds time back until it is read or found empty. Where end offsets are not known, silence
alone decides; a source silent for `stall_ms` is idle whatever its offsets say (a reader stuck
behind must not stop time for everyone for longer than that).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

UNKNOWN = -(2**62)  # no event seen yet: earlier than any real time
NO_OFFSET = -1


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
    heard_at_ms: int | None = None  # processing time of the last record read; None: none read yet
    expected_at_ms: int = 0  # processing time since which it is known
    position: int = NO_OFFSET  # the next offset to read (until the first read: where reading should start)
    end: int = NO_OFFSET  # the partition's end offset, as last fetched
    end_at_ms: int = UNKNOWN  # when it was fetched

    def caught_up(self, fresh_since_ms: int) -> bool:
        """Whether its reader has reached an end offset fetched after the last read and since fresh_since_ms."""
        fetched_after = max(fresh_since_ms, self.heard_at_ms if self.heard_at_ms is not None else UNKNOWN)
        return self.end != NO_OFFSET and self.end_at_ms >= fetched_after and self.position >= self.end


@dataclass
class EventClock:
    out_of_orderness_ms: int
    idleness_ms: int
    max_skew_ms: int = 300_000
    stall_ms: int = 300_000  # silent this long, a source is idle whatever its offsets say
    sources: dict[str, SourceClock] = field(default_factory=dict)
    _combined_ms: int = UNKNOWN

    def expect(self, source: str, position: int, now_ms: int) -> None:
        """A source that exists, to be read from `position` on: it holds time back until read or found empty."""
        self.sources.setdefault(source, SourceClock(expected_at_ms=now_ms, position=position))

    def starts_at_least(self, source: str, position: int) -> None:
        """A source not read yet starts at `position` or later (its reader resumed there, as Kafka now says)."""
        clock = self.sources.get(source)
        if clock is not None and clock.heard_at_ms is None:
            clock.position = max(clock.position, position)

    def unread(self) -> list[str]:
        return [source for source, clock in self.sources.items() if clock.heard_at_ms is None]

    def read(self, source: str, offset: int, now_ms: int) -> None:
        """A record of the source was read, with or without an event time. The first read says where
        reading really started, whatever was expected."""
        clock = self._source(source, now_ms)
        clock.position = offset + 1 if clock.heard_at_ms is None else max(clock.position, offset + 1)
        clock.heard_at_ms = now_ms

    def observe(self, source: str, at_ms: int, now_ms: int) -> None:
        clock = self._source(source, now_ms)
        clock.heard_at_ms = now_ms
        if at_ms <= now_ms + self.max_skew_ms and at_ms > clock.newest_ms:
            clock.newest_ms = at_ms

    def ends(self, end_offsets: Mapping[str, int], now_ms: int) -> None:
        """The partitions' end offsets, fetched at now_ms."""
        for source, end in end_offsets.items():
            if source in self.sources:
                clock = self.sources[source]
                clock.end, clock.end_at_ms = end, now_ms

    def forget_ends(self) -> None:
        """End offsets are out of reach: silence alone tells idle sources until they come back."""
        for clock in self.sources.values():
            clock.end, clock.end_at_ms = NO_OFFSET, UNKNOWN

    def wants_ends(self, now_ms: int) -> bool:
        """Whether fresher end offsets could tell a source idle: one is silent or unread, and its end offset
        is unknown, older than its last read or half an idleness timeout old."""
        return any(
            (clock.heard_at_ms is None or now_ms - clock.heard_at_ms > self.idleness_ms)
            and not clock.caught_up(now_ms - self.idleness_ms // 2)
            for clock in self.sources.values()
        )

    def is_idle(self, source: str, now_ms: int) -> bool:
        clock = self.sources[source]
        if clock.heard_at_ms is None:  # expected, never read: idle once found empty (or stuck)
            silent_ms = now_ms - clock.expected_at_ms
        elif (silent_ms := now_ms - clock.heard_at_ms) <= self.idleness_ms:
            return False
        if clock.end_at_ms == UNKNOWN:
            return silent_ms > self.idleness_ms
        return clock.caught_up(now_ms - self.idleness_ms) or silent_ms > self.stall_ms

    def source_watermark(self, source: str) -> int:
        newest = self.sources[source].newest_ms
        return newest - self.out_of_orderness_ms if newest != UNKNOWN else UNKNOWN

    def watermark(self, now_ms: int) -> int:
        """The smallest watermark of the active sources; it stands still while every source is
        idle or one with records waiting has not been read yet, and never goes back, even when an
        idle source wakes up behind it. A source read but with no event times (legs) holds no one back."""
        if (holding := self._holding(now_ms)) is None:
            return self._combined_ms
        if holding:
            self._combined_ms = max(self._combined_ms, min(holding))
        return self._combined_ms

    def is_idle_everywhere(self, now_ms: int) -> bool:
        """Whether no source holds time back: each is idle or tells no time. What the sources send on then is no
        reason for the operators after them to wait (WatermarkMerge), whatever time this clock tells."""
        return self._holding(now_ms) == []

    def _holding(self, now_ms: int) -> list[int] | None:
        """The watermarks of the active sources that tell time; None while an active source is still unread."""
        holding = []
        for source, clock in self.sources.items():
            if self.is_idle(source, now_ms):
                continue
            if clock.heard_at_ms is None:
                return None
            if clock.newest_ms != UNKNOWN:
                holding.append(self.source_watermark(source))
        return holding

    def _source(self, source: str, now_ms: int) -> SourceClock:
        if (clock := self.sources.get(source)) is None:
            clock = self.sources[source] = SourceClock(expected_at_ms=now_ms)
        return clock


@dataclass
class WatermarkMerge:
    """Downstream of several parallel upstream instances: time is as far as the slowest of those that
    spoke within the idleness timeout (processing time) and were not idle everywhere upstream, so that
    neither a quiet upstream nor one whose sources all are idle holds anyone back."""

    idleness_ms: int
    _by_upstream: dict[str, tuple[int, int, bool]] = field(default_factory=dict)  # watermark, heard at, idle
    _combined_ms: int = UNKNOWN

    def update(self, upstream: str, watermark_ms: int, now_ms: int, *, idle: bool) -> int:
        previous = self._by_upstream.get(upstream, (UNKNOWN, now_ms, idle))[0]
        self._by_upstream[upstream] = (max(previous, watermark_ms), now_ms, idle)
        if active := self._active(now_ms):
            self._combined_ms = max(self._combined_ms, min(active))
        return self._combined_ms

    def is_idle_everywhere(self, now_ms: int) -> bool:
        """Whether no upstream holds time back: each is quiet or idle everywhere upstream."""
        return not self._active(now_ms)

    def _active(self, now_ms: int) -> list[int]:
        return [
            mark for mark, heard, idle in self._by_upstream.values() if not idle and now_ms - heard <= self.idleness_ms
        ]
