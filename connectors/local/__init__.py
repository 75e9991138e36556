"""The local stack: a real Kafka broker and the embedded ClickHouse server, run as daemons."""

from pathlib import Path

TARGET_DIR = Path(__file__).parent / "target"
FLINK_JARS_DIR = TARGET_DIR / "flink-jars"
