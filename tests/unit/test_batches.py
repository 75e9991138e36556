"""Micro-batches between operators: lanes, their owners, and the marked last element per subtask."""

from __future__ import annotations

from jobs.batches import Lanes, by_lane, framed


def lanes(owners: tuple[int, ...]) -> Lanes:
    return Lanes.assigned(len(owners), max(owners) + 1, lambda key: owners[key % len(owners)])


def test_the_last_element_bound_for_each_subtask_is_marked_and_only_it() -> None:
    four = lanes((0, 1, 1, 0))
    elements = list(framed({0: ["a"], 1: ["b"], 2: ["c"], 3: ["d"]}, four, "normalize-0", 7))
    assert [(e.lane, e.last) for e in elements] == [(0, False), (1, False), (2, True), (3, True)]
    assert {e.upstream for e in elements} == {"normalize-0"} and {e.watermark_ms for e in elements} == {7}


def test_each_subtask_gets_a_writer_key_that_it_owns() -> None:
    four = lanes((1, 1, 0, 1))
    assert four.writer_keys == (2, 0)


def test_an_entity_always_lands_in_the_same_lane() -> None:
    four = lanes((0, 1, 0, 1))
    grouped = by_lane(["order-1", "order-2", "order-1"], four, str)
    assert sum(map(len, grouped.values())) == 3
    assert any(items.count("order-1") == 2 for items in grouped.values())
