"""The local stack: a real Kafka broker and the embedded ClickHouse server, run as daemons."""

from pathlib import Path

TARGET_DIR = Path(__file__).parent / "target"
FLINK_JARS_DIR = TARGET_DIR / "flink-jars"

# How the job checkpoints, locally and on the session cluster. Barriers stay aligned: the
# operators release what a micro-batch made when its last element arrives (jobs/batches.py),
# which is safe only if no barrier overtakes in-flight elements. Buffer debloating keeps the
# in-flight data, and so the time a barrier waits behind it under backpressure, small.
CHECKPOINTING = {
    "state.backend.type": "hashmap",
    "taskmanager.network.memory.buffer-debloat.enabled": "true",
    "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
    "execution.checkpointing.num-retained": "2",
    "restart-strategy.type": "exponential-delay",
}
