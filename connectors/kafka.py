"""Kafka plumbing used around the jobs: topics, offsets, and replaying recordings."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    KafkaError,
    NotCoordinatorError,
)

__all__ = ["KafkaError", "TopicPartition"]


def admin(bootstrap_servers: str, timeout_ms: int = 10_000) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="orderscope-admin",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )


def is_reachable(bootstrap_servers: str) -> bool:
    try:
        client = admin(bootstrap_servers)
    except KafkaError:
        return False
    try:
        client.list_topics()
        return True
    except KafkaError:
        return False
    finally:
        client.close()


def ensure_topics(bootstrap_servers: str, topics: Iterable[str], partitions: int) -> list[str]:
    """Create the topics that do not exist yet; returns those it created."""
    client = admin(bootstrap_servers)
    try:
        missing = sorted(set(topics) - set(client.list_topics()))
        if missing:
            client.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing])
        return missing
    finally:
        client.close()


def read_topic(bootstrap_servers: str, topic: str, timeout_s: float = 30) -> list[bytes]:
    """Every record value of a small topic, from its beginning to its end as of now, partition by partition."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False, group_id=None)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return []
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(partition) < end for partition, end in ends.items()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kafka: topic {topic} not read to its end within {timeout_s:g} s")
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(record.value for record in records)
        return values
    finally:
        consumer.close()


def forget_group_offsets(bootstrap_servers: str, group: str) -> None:
    """Delete a consumer group's committed offsets (a fresh start must not look caught up)."""
    probe = OffsetProbe(bootstrap_servers)
    try:
        committed = probe.committed_offsets(group)
        if committed:
            probe.admin.delete_group_offsets(group, list(committed))
        left = probe.committed_offsets(group)
    finally:
        probe.close()
    if left:
        raise RuntimeError(
            f"could not delete the committed offsets of consumer group {group}: {sorted(map(str, left))}"
        )


class OffsetProbe:
    """Reads topics' start and end offsets and a consumer group's committed offsets, on long-lived clients,
    each request given up after timeout_ms."""

    def __init__(self, bootstrap_servers: str, timeout_ms: int = 10_000) -> None:
        self.admin = admin(bootstrap_servers, timeout_ms)
        self._timeout_ms = timeout_ms
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=bootstrap_servers, client_id="orderscope-offsets", bootstrap_timeout_ms=timeout_ms
            )
        except KafkaError:
            self.admin.close()
            raise

    def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        return [
            TopicPartition(topic, p)
            for topic in topics
            for p in sorted(self._consumer.partitions_for_topic(topic) or ())
        ]

    def end_offsets(self, topics: Iterable[str]) -> dict[TopicPartition, int]:
        return dict(self._consumer.end_offsets(self.partitions(topics), timeout_ms=self._timeout_ms))

    def start_offsets(self, topics: Iterable[str], group: str, start_from: str) -> dict[TopicPartition, int]:
        """Where a reader of the group starts on each partition, as far as Kafka knows: at the group's committed
        offset (where a job restored from a checkpoint resumes, or near it), else at the earliest or latest."""
        partitions = self.partitions(topics)
        first = self._consumer.beginning_offsets if start_from == "earliest" else self._consumer.end_offsets
        committed = self.committed_offsets(group)
        return {tp: committed.get(tp, offset) for tp, offset in first(partitions, self._timeout_ms).items()}

    def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        try:
            offsets = self.admin.list_group_offsets({group: None}).get(group, {})
        except (CoordinatorNotAvailableError, CoordinatorLoadInProgressError, NotCoordinatorError):
            return {}  # the group's coordinator is still starting: nothing committed yet
        return {tp: meta.offset for tp, meta in offsets.items()}

    def close(self) -> None:
        self._consumer.close()
        self.admin.close()


def _wait_until(moment: float) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        time.sleep(delay)


@dataclass(frozen=True)
class RecordedMessage:
    """One line of a recording (shared/contracts/README.md §6)."""

    topic: str
    key: str | None
    value: str
    ts_ms: int

    @classmethod
    def parse(cls, line: str, where: str) -> RecordedMessage:
        try:
            raw = json.loads(line)
            return cls(raw["topic"], raw.get("key"), raw["value"], int(raw["ts_ms"]))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{where}: not a recording line (expected a JSON object with topic, value and ts_ms): {error}"
            ) from None


def read_recording(path: Path) -> Iterator[RecordedMessage]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if line.strip():
                yield RecordedMessage.parse(line, f"{path}:{number}")


def replay(
    bootstrap_servers: str,
    messages: Iterable[RecordedMessage],
    *,
    realtime: bool = False,
    rate: float | None = None,
    on_progress: Callable[[int], None] = lambda sent: None,
) -> int:
    """Produce the messages in order: as fast as possible, at `rate` messages per
    second, or (realtime) keeping the gaps between their recorded times. Records are stamped with the
    time they are produced now: a broker rejects timestamps far in the future,
    and a replay is a new production. Returns how many were sent."""
    producer = KafkaProducer(bootstrap_servers=bootstrap_servers, acks="all", linger_ms=5, retries=5)
    sent = 0
    failures: list[Exception] = []
    first_ts: int | None = None
    started = time.monotonic()
    try:
        for message in messages:
            if realtime:
                first_ts = message.ts_ms if first_ts is None else first_ts
                _wait_until(started + (message.ts_ms - first_ts) / 1000)
            elif rate:
                _wait_until(started + sent / rate)
            future = producer.send(
                message.topic,
                key=message.key.encode() if message.key is not None else None,
                value=message.value.encode("utf-8", errors="surrogatepass"),
            )
            future.add_errback(failures.append)
            sent += 1
            if sent % 1000 == 0:
                on_progress(sent)
        producer.flush()
    finally:
        producer.close()
    if failures:
        raise RuntimeError(f"Kafka did not accept {len(failures)} of {sent} messages; first error: {failures[0]}")
    on_progress(sent)
    return sent
