"""The local stack: a real Kafka broker and the embedded ClickHouse server, run as daemons."""

from pathlib import Path

TARGET_DIR = Path(__file__).parent / "target"
FLINK_JARS_DIR = TARGET_DIR / "flink-jars"

# How the job checkpoints, locally and on the session cluster. Micro-batches make large records:
# under backpressure an aligned barrier would wait behind them, so barriers may overtake
# in-flight data (unaligned), and buffer debloating keeps that data small.
CHECKPOINTING = {
    "state.backend.type": "hashmap",
    "execution.checkpointing.unaligned.enabled": "true",
    "taskmanager.network.memory.buffer-debloat.enabled": "true",
    "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
    "execution.checkpointing.num-retained": "2",
    "restart-strategy.type": "exponential-delay",
}
