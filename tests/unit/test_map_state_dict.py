"""The dict view of Flink MapState: writes reach state in one call per commit, reads are cached."""

from __future__ import annotations

from typing import Any

from jobs.operators import MapStateDict


class RecordingMapState:
    """Stands in for PyFlink's MapState, counting the calls that would cross into the JVM."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.calls: list[str] = []

    def get(self, key: str) -> Any:
        self.calls.append("get")
        return self.data.get(key)

    def put_all(self, values: dict[str, Any]) -> None:
        self.calls.append("put_all")
        self.data.update(values)

    def remove(self, key: str) -> None:
        self.calls.append("remove")
        self.data.pop(key, None)

    def keys(self) -> list[str]:
        self.calls.append("keys")
        return list(self.data)


def test_writes_reach_state_in_one_call_at_commit_and_are_readable_before() -> None:
    state = RecordingMapState()
    mapping = MapStateDict(state, cache_entries=10)
    mapping["a"], mapping["b"] = 1, 2
    assert mapping["a"] == 1 and "b" in mapping and state.data == {}
    mapping.commit()
    assert state.data == {"a": 1, "b": 2} and state.calls == ["put_all"]


def test_reads_of_known_and_absent_keys_cross_into_state_once() -> None:
    state = RecordingMapState()
    state.data["a"] = 1
    mapping = MapStateDict(state, cache_entries=10)
    assert [mapping.get("a"), mapping.get("a"), mapping.get("x"), mapping.get("x")] == [1, 1, None, None]
    assert state.calls == ["get", "get"]


def test_a_deleted_key_is_gone_from_state_cache_and_pending_writes() -> None:
    state = RecordingMapState()
    mapping = MapStateDict(state, cache_entries=10)
    mapping["a"] = 1
    mapping.commit()
    mapping["a"] = 2
    del mapping["a"]
    mapping.commit()
    assert "a" not in mapping and state.data == {}


def test_the_cache_keeps_only_the_most_recently_used_entries() -> None:
    state = RecordingMapState()
    state.data.update(a=1, b=2, c=3)
    mapping = MapStateDict(state, cache_entries=2)
    for key in ("a", "b", "a", "c", "a", "b"):
        mapping.get(key)
    assert state.calls == ["get", "get", "get", "get"]  # b was evicted by c, then read again


class KeyedMapState:
    """MapState under Flink's current key: each lane has its own mapping."""

    def __init__(self) -> None:
        self.lanes: dict[int, dict[str, Any]] = {}
        self.current = 0

    def get(self, key: str) -> Any:
        return self.lanes.get(self.current, {}).get(key)

    def put_all(self, values: dict[str, Any]) -> None:
        self.lanes.setdefault(self.current, {}).update(values)


def test_the_same_key_in_two_lanes_is_two_values_also_when_cached() -> None:
    state = KeyedMapState()
    mapping = MapStateDict(state, cache_entries=10)
    for lane, value in ((1, "first lane"), (2, "second lane")):
        state.current = mapping.lane = lane
        mapping["pending"] = value
        mapping.commit()
    seen = []
    for lane in (1, 2, 1):
        state.current = mapping.lane = lane
        seen.append(mapping["pending"])
    assert seen == ["first lane", "second lane", "first lane"]
