"""Micro-batches: the Kafka records in one, and between operators lanes, their owners, and the marked last element
per subtask."""

from __future__ import annotations

from types import SimpleNamespace

from jobs.batches import Lanes, by_lane, framed
from jobs.operators import TICK_TOPIC, LaneOperator, raw_records
from schemas.event_time import UNKNOWN

MAX_PARALLELISM = 128


def key_group_of(key: int) -> int:
    return (key * 37 + 11) % MAX_PARALLELISM  # any spread of keys over key groups will do here


def lanes(count: int, parallelism: int) -> Lanes:
    def owner_of(key: int) -> int:
        return key_group_of(key) * parallelism // MAX_PARALLELISM  # Flink's range assignment

    return Lanes.assigned(count, parallelism, MAX_PARALLELISM, key_group_of, owner_of)


def test_lanes_spread_evenly_over_the_subtasks() -> None:
    for parallelism in (1, 2, 4):
        sixteen = lanes(16, parallelism)
        owned = [list(sixteen.owners.values()).count(subtask) for subtask in range(parallelism)]
        assert owned == [16 // parallelism] * parallelism


def test_the_last_element_bound_for_each_subtask_is_marked_and_only_it() -> None:
    four = lanes(4, 2)
    keys = four.keys
    elements = list(framed({key: [str(key)] for key in keys}, four, "normalize-0", 7, False))
    last = {four.owners[e.lane]: e.lane for e in elements}
    assert [e.last for e in elements] == [last[four.owners[e.lane]] == e.lane for e in elements]
    assert sum(e.last for e in elements) == 2
    assert {e.upstream for e in elements} == {"normalize-0"} and {e.watermark_ms for e in elements} == {7}


def test_each_subtask_gets_a_writer_key_that_it_owns() -> None:
    two = lanes(4, 2)
    owner = {key: key_group_of(key) * 2 // MAX_PARALLELISM for key in two.writer_keys}
    assert [owner[key] for key in two.writer_keys] == [0, 1]


def test_an_entity_always_lands_in_the_same_lane() -> None:
    four = lanes(4, 2)
    grouped = by_lane(["order-1", "order-2", "order-1"], four, str)
    assert sum(map(len, grouped.values())) == 3
    assert any(items.count("order-1") == 2 for items in grouped.values())
    assert set(grouped) <= set(four.keys)


def test_the_clocks_beats_are_not_records() -> None:
    beat = (b"", TICK_TOPIC, 3, -1, 0)
    record = (b"{}", "raw.wms", 1, 41, 1_700_000_000_000)
    batch = SimpleNamespace(**dict(zip(("payloads", "topics", "partitions", "offsets", "received_at_ms"),
                                       map(list, zip(beat, record, beat, strict=True)), strict=True)))  # fmt: skip
    assert list(raw_records(batch)) == [record]


def passing_on(lanes: Lanes) -> LaneOperator:
    """A lane operator as open() leaves it, for its onward() alone."""
    operator = LaneOperator(lanes, cache_entries=0, idleness_ms=10_000)
    operator._name, operator._forwarded_ms = "vehicles-0", UNKNOWN
    operator._forwarded_idle = operator._idle = False
    return operator


def test_a_change_of_idleness_is_told_to_every_subtask_and_only_the_change() -> None:
    four = lanes(16, 4)
    operator = passing_on(four)
    subtasks = {four.owners[batch.lane] for batch in (row[1] for row in operator.onward([], str, 60_000))}
    assert subtasks == {0, 1, 2, 3}  # time moved
    assert list(operator.onward([], str, 60_000)) == []  # nothing new
    operator._idle = True  # every upstream went idle: downstream must stop waiting for this one
    told = [row[1] for row in operator.onward([], str, 60_000)]
    assert {four.owners[batch.lane] for batch in told} == {0, 1, 2, 3} and all(batch.idle for batch in told)
    assert list(operator.onward([], str, 60_000)) == []
