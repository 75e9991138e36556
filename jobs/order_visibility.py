"""The order-visibility job: raw channel and logistics events in, orders_current out.

    raw.* ─► normalize ─┬─ order events ───────────────────────────────┐
                        ├─ carrier scans, manifests ─────┐                  │
                        ├─ GPS ─► track vehicles ────────┴─► resolve waybills ─┤
                        ├─ buyer identifiers ─► resolve customers ─────────────┼─► track orders ─► orders_current
                        │                       └──────────────► customer_links └─────────────────► order_events
                        ├─ modifications, service messages, signals ──────────────────────────────► their tables
                        └─ dead letters ──────────────────────────► dead_letters, orderscope.dead_letters

Submit it to a Flink cluster with `flink run -py jobs/order_visibility.py`;
locally, `orderscope job run` runs it with checkpoints and resume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pyflink.common import Types
from pyflink.common.serialization import SimpleStringSchema
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.connectors.base import DeliveryGuarantee
from pyflink.datastream.connectors.kafka import KafkaRecordSerializationSchema, KafkaSink
from pyflink.table import StreamTableEnvironment

from connectors.clickhouse import ClickHouseTarget
from jobs import operators
from jobs.settings import Settings
from schemas import topics
from schemas.adapters import ADAPTERS
from schemas.identity import load_strong_kinds
from schemas.order_view import ORDER_COLUMNS

JOB_NAME = "order-visibility"
PICKLED = Types.PICKLED_BYTE_ARRAY()


def kafka_source_ddl(settings: Settings, topics: Sequence[str]) -> str:
    """The raw topics as a table of records: payload bytes untouched, plus where each came from."""
    return f"""
        CREATE TEMPORARY TABLE raw_records (
            payload BYTES,
            `topic` STRING METADATA FROM 'topic' VIRTUAL,
            `partition` INT METADATA FROM 'partition' VIRTUAL,
            `offset` BIGINT METADATA FROM 'offset' VIRTUAL,
            `produced_at` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL
        ) WITH (
            'connector' = 'kafka',
            'topic' = '{";".join(topics)}',
            'properties.bootstrap.servers' = '{settings.bootstrap_servers}',
            'properties.group.id' = '{settings.consumer_group}',
            'properties.commit.offsets.on.checkpoint' = 'true',
            'scan.startup.mode' = 'earliest-offset',
            'format' = 'raw'
        )"""


def build(env: StreamExecutionEnvironment, settings: Settings) -> None:
    table_env = StreamTableEnvironment.create(env)
    table_env.execute_sql(kafka_source_ddl(settings, sorted(ADAPTERS)))
    records = table_env.to_data_stream(
        table_env.sql_query(
            "SELECT payload, `topic`, `partition`, `offset`, "
            "UNIX_TIMESTAMP(CAST(produced_at AS STRING)) * 1000 + EXTRACT(MILLISECOND FROM produced_at) "
            "AS received_at_ms FROM raw_records"
        )
    )
    events = (
        records.process(operators.Normalize(settings.pii_key), output_type=PICKLED).name("normalize").uid("normalize")
    )
    positions = (
        events.get_side_output(operators.VEHICLE_EVENTS)
        .key_by(operators.vehicle_of, key_type=Types.STRING())
        .process(operators.TrackVehicles(settings.position_update_interval_ms), output_type=PICKLED)
        .name("track vehicles")
        .uid("track-vehicles")
    )
    carrier_updates = (
        events.get_side_output(operators.WAYBILL_EVENTS)
        .union(positions)
        .key_by(operators.waybill_of, key_type=Types.STRING())
        .process(operators.ResolveWaybills(), output_type=PICKLED)
        .name("resolve waybills")
        .uid("resolve-waybills")
    )
    order_events = events.union(carrier_updates)
    customers = (
        events.get_side_output(operators.IDENTIFIED_ORDERS)
        .key_by(operators.all_customers, key_type=Types.STRING())
        .process(operators.ResolveCustomers(load_strong_kinds()), output_type=PICKLED)
        .name("resolve customers")
        .uid("resolve-customers")
    )
    order_rows = (
        order_events.union(customers)
        .key_by(operators.order_key, key_type=Types.STRING())
        .process(operators.TrackOrders(), output_type=PICKLED)
        .name("track orders")
        .uid("track-orders")
    )
    sink = _ClickHouseSinks(settings)
    sink(order_rows, tuple, "orders_current", ORDER_COLUMNS)
    sink(order_events, operators.journey_row, "order_events", operators.JOURNEY_COLUMNS)
    links = customers.get_side_output(operators.CUSTOMER_LINKS)
    sink(links, operators.customer_link_row, "customer_links", operators.CUSTOMER_LINK_COLUMNS)
    for tag, to_row, table, columns in (
        (operators.MODIFICATIONS, operators.modification_row, "modifications", operators.MODIFICATION_COLUMNS),
        (
            operators.SERVICE_MESSAGES,
            operators.service_message_row,
            "service_messages",
            operators.SERVICE_MESSAGE_COLUMNS,
        ),
        (operators.SIGNALS, operators.signal_row, "signals", operators.SIGNAL_COLUMNS),
    ):
        sink(events.get_side_output(tag), to_row, table, columns)
    dead_letters = events.get_side_output(operators.DEAD_LETTERS)
    sink(dead_letters, operators.dead_letter_row, "dead_letters", operators.DEAD_LETTER_COLUMNS)
    (
        dead_letters.map(operators.dead_letter_json, output_type=Types.STRING())
        .name("dead letter records")
        .uid("dead-letter-records")
        .sink_to(_dead_letter_topic(settings))
        .name(f"kafka {topics.DEAD_LETTERS}")
        .uid("kafka-dead-letters")
    )


class _ClickHouseSinks:
    """Each stream into its table: one map makes the row and picks its shard, then a batching sink per shard."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._target = ClickHouseTarget(
            settings.clickhouse_endpoint,
            settings.clickhouse_user,
            settings.clickhouse_password,
            settings.clickhouse_database,
        )

    def __call__(self, stream: DataStream, to_row: Callable[[Any], Any], table: str, columns: Sequence[str]) -> None:
        shards = 4 * self._settings.parallelism
        (
            stream.map(operators.Sharded(to_row, shards), output_type=PICKLED)
            .name(f"{table} rows")
            .uid(f"{table}-rows")
            .key_by(operators.shard_key, key_type=Types.INT())
            .process(
                operators.ClickHouseBatchSink(
                    self._target,
                    table,
                    columns,
                    self._settings.sink_flush_interval_ms,
                    self._settings.sink_max_batch_rows,
                )
            )
            .name(f"clickhouse {table}")
            .uid(f"clickhouse-{table}")
        )


def _dead_letter_topic(settings: Settings) -> KafkaSink:
    """At-least-once: records are flushed before each checkpoint completes, visible at once to readers."""
    serializer = (
        KafkaRecordSerializationSchema.builder()
        .set_topic(topics.DEAD_LETTERS)
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
