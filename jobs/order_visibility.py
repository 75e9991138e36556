"""The order-visibility job: raw channel and logistics events in, orders_current out.

    raw.* ─► micro-batches (Flink SQL: a processing-time window per Kafka partition group, with a clock's beats)
          ─► normalize ─┬─ order events ──────────────────────────────────────────┐
                        ├─ GPS, manifests ─► track vehicles ─┐                       │
                        ├─ carrier scans, waybill links ─────┴► resolve waybills ──────┤
                        ├─ buyer identifiers ─► resolve customers ─────────────────────┼─► track orders ─► alerts
                        │                            └─ customer_links ──┐              │    (health, ETA,  ─► legs ─┐
                        │                                                │              │     checks)                │
                        ├─ legs, breakers read back ─────────────────────┼──────────────┤ (to every lane)  ◄─────────┤
                        ├─ modifications, service messages, signals ────────────────────┤ (also to track orders)    │
                        │                                                │   KPI facts ─► count kpis ─► alerts,      │
                        │                                                │               (windows,     breakers ─────┘
                        │                                                │                breakers)
                        ├─ their rows, dead letters, event-time reports ─┴─────────────┴─► ClickHouse writer
                        └─ dead letters ─► orderscope.dead_letters

Every Python operator works on micro-batches, keyed by lane (jobs/batches.py); only
the writer keeps rows across calls, in state, and writes them in few large inserts.

Submit it to a Flink cluster with `orderscope job submit` (`flink run -py jobs/order_visibility.py`);
locally, `orderscope job run` runs it with checkpoints and resume.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyflink.common import Types
from pyflink.common.serialization import SimpleStringSchema
from pyflink.datastream import DataStream, KeyedStream, StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment

from jobs import operators
from jobs.batches import Lanes
from jobs.settings import Settings
from jobs.source_clock import KafkaInput
from schemas import topics
from schemas.adapters import ADAPTERS
from schemas.health import load_health_policy
from schemas.identity import load_identity_rules
from schemas.kpi import load_kpi_settings
from schemas.rules import load_rules

JOB_NAME = "order-visibility"
NETWORK_FLUSH_MS = 5
GRAPH_VERSION = 4  # raise it when the graph changes shape: Flink cannot map a checkpoint of another shape
PICKLED = Types.PICKLED_BYTE_ARRAY()


def kafka_source_ddl(settings: Settings, topics: Sequence[str]) -> str:
    """The raw topics as a table of records: payload bytes untouched, plus where each came from."""
    return f"""
        CREATE TEMPORARY TABLE raw_records (
            payload BYTES,
            `topic` STRING METADATA FROM 'topic' VIRTUAL,
            `partition` INT METADATA FROM 'partition' VIRTUAL,
            `offset` BIGINT METADATA FROM 'offset' VIRTUAL,
            `produced_at` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
            `arrived` AS PROCTIME()
        ) WITH (
            'connector' = 'kafka',
            'topic' = '{";".join(topics)}',
            'properties.bootstrap.servers' = '{settings.bootstrap_servers}',
            'properties.group.id' = '{settings.consumer_group}',
            'properties.commit.offsets.on.checkpoint' = 'true',
            'scan.startup.mode' = '{settings.start_from}-offset',
            'format' = 'raw'
        )"""


TICKS_DDL = """
    CREATE TEMPORARY TABLE ticks (
        beat INT,
        `arrived` AS PROCTIME()
    ) WITH (
        'connector' = 'datagen',
        'rows-per-second' = '1',
        'fields.beat.kind' = 'random',
        'fields.beat.min' = '0',
        'fields.beat.max' = '0'
    )"""  # a clock: at least one beat a second (Flink 2.2's datagen: one per source subtask)


def records_view(settings: Settings) -> str:
    """The raw records and the clock's beats (topic operators.TICK_TOPIC, offset -1), each beat told once as if of
    partition 0, 1, ... LANES - 1: every partition group gets each beat (micro_batches_sql), so each normalizer
    looks at its partitions' clocks at least once a second while no record arrives. As many arms as
    lanes, not as partition groups: the graph's shape, and so Flink's operator ids, must not depend on the
    parallelism, or a checkpoint could not be resumed at another."""
    beats = "".join(
        f"""
        UNION ALL
        SELECT X'', '{operators.TICK_TOPIC}', {arm}, CAST(-1 AS BIGINT), TO_TIMESTAMP_LTZ(0, 3), arrived FROM ticks"""
        for arm in range(settings.lanes)
    )
    return f"""
        CREATE TEMPORARY VIEW records AS
        SELECT payload, `topic`, `partition`, `offset`, produced_at, arrived FROM raw_records{beats}"""


def micro_batches_sql(settings: Settings, routes: Sequence[int]) -> str:
    """One row per window and partition group (a partition's number modulo the parallelism): the records
    of that window, as parallel arrays. Each group is grouped by its route, a key that Flink's hashing
    sends to a subtask of its own, and the normalizer after it reads that group's partitions and no other.
    Each group also gets the clock's beats (records_view): a window with no record would not fire.

    A processing-time window fires on its own clock, so a batch waits at most one window."""
    window = f"INTERVAL '{settings.batch_window_ms / 1000:.3f}' SECOND"
    group = f"MOD(`partition`, {settings.parallelism})"
    route = f"CASE {group} {' '.join(f'WHEN {g} THEN {key}' for g, key in enumerate(routes))} END"
    return f"""
        SELECT {route} AS route,
               ARRAY_AGG(payload) AS payloads,
               ARRAY_AGG(`topic`) AS topics,
               ARRAY_AGG(`partition`) AS partitions,
               ARRAY_AGG(`offset`) AS offsets,
               ARRAY_AGG(UNIX_TIMESTAMP(CAST(produced_at AS STRING)) * 1000
                         + EXTRACT(MILLISECOND FROM produced_at)) AS received_at_ms
        FROM TABLE(TUMBLE(TABLE records, DESCRIPTOR(arrived), {window}))
        GROUP BY window_start, window_end, {route}"""


@dataclass(frozen=True)
class PartitionRoutes:
    """For each partition group g (partition number modulo the parallelism), a grouping key congruent to g
    that Flink's hashing of SQL keys (a one-INT BinaryRowData) assigns to a subtask no other group gets:
    each normalizer then owns its partitions (its clock knows their offsets) and the groups spread evenly
    (keys 0 and 1 hash to the same subtask of 2)."""

    keys: tuple[int, ...]  # by group
    group_of_subtask: tuple[int, ...]

    @classmethod
    def of(cls, settings: Settings) -> PartitionRoutes:
        jvm = get_gateway().jvm
        assignment = jvm.org.apache.flink.runtime.state.KeyGroupRangeAssignment

        def owner_of(key: int) -> int:
            row = jvm.org.apache.flink.table.data.binary.BinaryRowData(1)
            writer = jvm.org.apache.flink.table.data.writer.BinaryRowWriter(row)
            writer.writeInt(0, key)
            writer.complete()
            return int(assignment.assignKeyToParallelOperator(row, settings.max_parallelism, settings.parallelism))

        count = settings.parallelism
        keys: dict[int, int] = {}  # owner -> key
        for group in range(count):
            key = next((k for k in range(group, 1000 * count, count) if owner_of(k) not in keys), None)
            if key is None:
                raise RuntimeError(f"no key routes partition group {group} of {count} to a subtask of its own")
            keys[owner_of(key)] = key
        return cls(
            tuple(sorted(keys.values(), key=lambda key: key % count)),
            tuple(keys[subtask] % count for subtask in range(count)),
        )


def lanes_for(settings: Settings) -> Lanes:
    """Lanes by Flink's own key-group assignment of the lane key (PyFlink keys by a one-field Row holding it)."""
    jvm = get_gateway().jvm
    assignment = jvm.org.apache.flink.runtime.state.KeyGroupRangeAssignment

    def row(key: int) -> Any:
        key_row = jvm.org.apache.flink.types.Row(1)  # as PyFlink's KeyByKeySelector makes the key
        key_row.setField(0, key)
        return key_row

    def key_group_of(key: int) -> int:
        return int(assignment.assignToKeyGroup(row(key), settings.max_parallelism))

    def owner_of(key: int) -> int:
        return int(assignment.assignKeyToParallelOperator(row(key), settings.max_parallelism, settings.parallelism))

    return Lanes.assigned(settings.lanes, settings.parallelism, settings.max_parallelism, key_group_of, owner_of)


def build(env: StreamExecutionEnvironment, settings: Settings) -> None:
    settings.pseudonymization_key()  # refuses a missing or, in production, the development key before any start
    env.set_max_parallelism(settings.max_parallelism)
    # Elements are whole micro-batches: send each at once rather than wait up to 100 ms (the default)
    # for a network buffer to fill, at each of the graph's six exchanges.
    env.set_buffer_timeout(NETWORK_FLUSH_MS)
    lanes = lanes_for(settings)
    retention, cache, idle = settings.retention, settings.state_cache_entries, settings.source_idleness_ms
    table_env = StreamTableEnvironment.create(env)
    source_topics = tuple(sorted(ADAPTERS))
    table_env.execute_sql(kafka_source_ddl(settings, source_topics))
    table_env.execute_sql(TICKS_DDL)
    table_env.execute_sql(records_view(settings))
    routes = PartitionRoutes.of(settings)
    batches = table_env.to_data_stream(table_env.sql_query(micro_batches_sql(settings, routes.keys)))
    source = KafkaInput(
        settings.bootstrap_servers, source_topics, settings.consumer_group, settings.start_from, routes.group_of_subtask
    )
    normalize = operators.NormalizeBatches(lanes, source, settings.out_of_orderness_ms, settings.source_idleness_ms)
    normalized = batches.process(normalize, output_type=operators.KEYED).name("normalize").uid("normalize")
    positions = _keyed(
        normalized.get_side_output(operators.VEHICLE_BATCHES),
        operators.TrackVehicles(lanes, cache, idle, settings.position_update_interval_ms, retention),
        "track vehicles",
    )
    waybill_events = _keyed(
        normalized.get_side_output(operators.WAYBILL_BATCHES).union(positions),
        operators.ResolveWaybills(lanes, cache, idle, retention),
        "resolve waybills",
    )
    customers = _keyed(
        normalized.get_side_output(operators.CUSTOMER_BATCHES),
        operators.ResolveCustomers(lanes, cache, idle, load_identity_rules()),
        "resolve customers",
    )
    order_rows = _keyed(
        normalized.union(waybill_events, customers),
        operators.TrackOrders(lanes, cache, idle, retention, load_health_policy(), load_rules()),
        "track orders",
    )
    kpis = _keyed(
        order_rows.get_side_output(operators.KPI_FACT_BATCHES),
        operators.CountKpis(lanes, idle, load_kpi_settings()),
        "count kpis",
    )
    writes = order_rows.union(
        *(
            stream.get_side_output(operators.WRITES)
            for stream in (normalized, positions, waybill_events, customers, kpis)
        )
    )
    target = settings.clickhouse
    writer = operators.ClickHouseWriter(target, settings.sink_flush_interval_ms, settings.sink_max_batch_rows)
    (keyed_by_key(writes).process(writer).name("clickhouse writer").uid("clickhouse-writer"))
    for records, topic, uid in (
        (normalized.get_side_output(operators.DEAD_LETTER_RECORDS), topics.DEAD_LETTERS, "kafka-dead-letters"),
        (
            order_rows.get_side_output(operators.ALERT_RECORDS).union(kpis.get_side_output(operators.ALERT_RECORDS)),
            topics.ALERTS,
            "kafka-alerts",
        ),
        (order_rows.get_side_output(operators.LEG_RECORDS), topics.ETA_LEGS, "kafka-eta-legs"),
        (kpis.get_side_output(operators.BREAKER_RECORDS), topics.BREAKERS, "kafka-breakers"),
    ):
        records.sink_to(_kafka_topic(settings, topic)).name(f"kafka {topic}").uid(uid)


def keyed_by_key(stream: DataStream) -> KeyedStream:
    """A stream of (key, value) Rows keyed by their first field, on the JVM side.

    PyFlink's own key_by adds a Python operator that unpickles every element only to
    pair it with its key and pickle it again; our operators emit the pair themselves
    (operators.KEYED), so the pair is keyed exactly as key_by would key it, without it.
    """
    jvm = get_gateway().jvm
    key_type = Types.ROW([Types.INT()]).get_java_type_info()
    return KeyedStream(stream._j_data_stream.keyBy(jvm.KeyByKeySelector(), key_type), PICKLED, stream)


def _keyed(stream: DataStream, function: operators.LaneOperator, name: str) -> DataStream:
    return keyed_by_key(stream).process(function, output_type=operators.KEYED).name(name).uid(name.replace(" ", "-"))


def _kafka_topic(settings: Settings, topic: str) -> KafkaSink:
    """At-least-once: records are flushed before each checkpoint completes, visible at once to readers
    (a dead letter names its source offset, an alert step carries an idempotency key)."""
    serializer = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(topic)
        .set_value_serialization_schema(SimpleStringSchema())
        .build()
    )
    return (
        KafkaSink.builder()
        .set_bootstrap_servers(settings.bootstrap_servers)
        .set_record_serializer(serializer)
        .set_delivery_guarantee(DeliveryGuarantee.AT_LEAST_ONCE)
        .build()
    )


def main() -> None:
    """Entry point on a Flink cluster: the cluster's configuration decides checkpoints and restarts."""
    settings = Settings.from_env()
    env = StreamExecutionEnvironment.get_execution_environment()
    env.set_parallelism(settings.parallelism)
    env.enable_checkpointing(settings.checkpoint_interval_ms)
    build(env, settings)
    env.execute(JOB_NAME)


if __name__ == "__main__":
    main()
