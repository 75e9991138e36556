"""How micro-batches travel between the job's Python operators.

Every keyed operator is keyed by *lane*: an entity (order, waybill, vehicle) lives
in lane crc32(key) % lanes, and its state sits in MapState under that lane. The
lane count is fixed for the life of the job's state; parallelism may change
(up to the lane count) and Flink moves lanes between subtasks.

An operator call produces one element per lane it has data for. Elements bound
for the same downstream subtask arrive in order, and the last of them is
marked: a downstream operator buffers what it makes in memory and passes it on
(or to the writer) when it receives a marked element. A checkpoint barrier can
only follow a whole upstream call, so nothing buffered in memory is ever
behind a barrier: only the writer keeps rows across calls, and it keeps them
in state.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple


class Batch(NamedTuple):
    lane: int
    last: bool  # the last element of its upstream call bound for this subtask
    upstream: str  # operator and subtask that sent it, e.g. "normalize-0"
    watermark_ms: int  # the sender's event time
    idle: bool  # whether every source behind the sender is idle: its time holds no one back (WatermarkMerge)
    items: list[Any]


@dataclass(frozen=True)
class Lanes:
    keys: tuple[int, ...]  # each lane's key, chosen so that lanes spread evenly over Flink's key groups
    owners: Mapping[int, int]  # lane key -> the subtask that owns it at the job's parallelism
    writer_keys: tuple[int, ...]  # for each subtask, a key that it owns (the writer's buffers)

    def of(self, key: str) -> int:
        """The lane (its key) of an entity."""
        return self.keys[zlib.crc32(key.encode()) % len(self.keys)]

    @classmethod
    def assigned(
        cls,
        count: int,
        parallelism: int,
        max_parallelism: int,
        key_group_of: Callable[[int], int],
        owner_of: Callable[[int], int],
    ) -> Lanes:
        """Lanes from Flink's key-group assignment of int keys: lane i gets a key in the i-th slice of the
        key groups, so any parallelism that divides the lane count owns equally many lanes per subtask."""
        if parallelism > count:
            raise ValueError(f"parallelism {parallelism} exceeds the {count} lanes that state is split into")
        keys: dict[int, int] = {}
        candidate = 0
        while len(keys) < count:
            keys.setdefault(key_group_of(candidate) * count // max_parallelism, candidate)
            candidate += 1
        writer_keys: dict[int, int] = {}
        candidate = 0
        while len(writer_keys) < parallelism:
            writer_keys.setdefault(owner_of(candidate), candidate)
            candidate += 1
        lane_keys = tuple(keys[lane] for lane in range(count))
        return cls(
            lane_keys, {key: owner_of(key) for key in lane_keys}, tuple(writer_keys[i] for i in range(parallelism))
        )


def by_lane(items: Iterable[Any], lanes: Lanes, key: Callable[[Any], str]) -> dict[int, list[Any]]:
    grouped: dict[int, list[Any]] = {}
    for item in items:
        grouped.setdefault(lanes.of(key(item)), []).append(item)
    return grouped


def framed(
    grouped: dict[int, list[Any]], lanes: Lanes, upstream: str, watermark_ms: int, idle: bool
) -> Iterator[Batch]:
    """One element per lane, the last one bound for each subtask marked."""
    last_lane = {lanes.owners[lane]: lane for lane in sorted(grouped)}
    for lane in sorted(grouped):
        yield Batch(lane, last_lane[lanes.owners[lane]] == lane, upstream, watermark_ms, idle, grouped[lane])
