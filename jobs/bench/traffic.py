"""The bench's traffic: simulated recordings, preloaded into Kafka or produced at a steady rate.

Records are sent by LineProducer.java (Kafka's Java client) rather than
kafka-python: here kafka-python spends 100-250 us of CPU per record, so
10,000 records/s would take most of the machine from the job being measured,
and a preload of 1.4 million records would take minutes.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from connectors.kafka import RecordedMessage, read_recording
from connectors.local.kafka_broker import CLASSPATH_FILE
from jobs.bench.environment import TRAFFIC_DIR, BenchEnvironment
from jobs.settings import PROJECT_ROOT

Report = Callable[[str], None]
PRODUCER_SOURCE = Path(__file__).with_name("LineProducer.java")
SIMULATOR_DIR = PROJECT_ROOT / "connectors" / "simulator"
PRODUCER_READY_TIMEOUT_S = 120.0
PACE_STEP_S = 0.01
PROGRESS_EVERY_S = 5.0


@dataclass(frozen=True)
class Traffic:
    """A simulated day, as producer lines (see producer_line) in a file kept across runs."""

    path: Path
    orders: int
    seed: int
    records: int
    simulate_s: float | None  # None: taken from the cache of an earlier run


def simulated_traffic(env: BenchEnvironment, orders: int, seed: int, report: Report) -> Traffic:
    """A simulated day of `orders` orders: made by `orderscope simulate --out` once, kept in TRAFFIC_DIR
    as producer lines (the recording itself is deleted: the lines hold the same bytes, and it is large).
    The simulator's own source is part of the name: a changed simulator makes new traffic."""
    path = TRAFFIC_DIR / f"orders-{orders}-seed-{seed}-simulator-{_simulator_version()}.lines"
    simulate_s = None
    if not path.exists():
        for stale in TRAFFIC_DIR.glob(f"orders-{orders}-seed-{seed}-*"):
            stale.unlink()
        report(f"  simulating {orders} orders (seed {seed}) into {path} ...")
        started = time.monotonic()
        recording = path.with_suffix(".jsonl")
        recording.parent.mkdir(parents=True, exist_ok=True)
        env.run("simulate", "--orders", str(orders), "--seed", str(seed), "--out", str(recording), timeout_s=1800)
        partial = path.with_suffix(".partial")
        with partial.open("wb") as lines:
            for _, chunk in _chunks(read_recording(recording), 10_000):
                lines.write(chunk)
        partial.rename(path)  # only complete traffic gets the name the cache looks for
        recording.unlink()
        recording.with_suffix(".truth.json").unlink(missing_ok=True)  # what simulate writes beside it
        simulate_s = time.monotonic() - started
    with path.open("rb") as lines:
        records = sum(1 for _ in lines)
    made = f"simulated in {simulate_s:.0f} s" if simulate_s is not None else "from the cache of an earlier run"
    report(f"  {path.name}: {records} records ({made})")
    return Traffic(path, orders, seed, records, simulate_s)


def _simulator_version() -> str:
    digest = hashlib.sha256()
    for source in sorted(SIMULATOR_DIR.glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()[:10]


def producer_line(message: RecordedMessage) -> bytes:
    """A record as LineProducer.java reads it: topic, key and value, tab-separated, in base64."""
    key = b"-" if message.key is None else base64.b64encode(message.key.encode())
    # As connectors.kafka.replay sends them: malformed payloads keep their lone surrogates.
    value = base64.b64encode(message.value.encode("utf-8", errors="surrogatepass"))
    return b"%s\t%s\t%s\n" % (message.topic.encode(), key, value)


class LineProducer:
    """LineProducer.java as a child process: records written to it are sent to Kafka, in order."""

    def __init__(self, bootstrap_servers: str, log: Path) -> None:
        classpath = CLASSPATH_FILE.read_text().strip()
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log
        with log.open("wb") as errors:
            self._process = subprocess.Popen(
                ["java", "-cp", classpath, str(PRODUCER_SOURCE), bootstrap_servers],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        self._input: IO[bytes] = _stream(self._process.stdin)
        self._output: IO[bytes] = _stream(self._process.stdout)

    @property
    def pid(self) -> int:
        return self._process.pid

    def wait_ready(self) -> None:
        """Until the JVM has compiled the producer and connected (it says "ready")."""
        waiter = threading.Thread(target=self._output.readline, daemon=True)
        waiter.start()
        waiter.join(PRODUCER_READY_TIMEOUT_S)
        if waiter.is_alive() or self._process.poll() is not None:
            self._process.kill()
            raise RuntimeError(f"the Java producer did not start; see {self._log}")

    def write(self, lines: bytes) -> None:
        self._input.write(lines)
        self._input.flush()  # paced lines are due now, not when a buffer fills

    def close(self) -> int:
        """Flush and stop; returns how many records were sent, raises if Kafka refused any."""
        self._input.close()
        summary = self._output.read().decode().strip()
        self._process.wait()
        if self._process.returncode != 0 or not summary.startswith("sent "):
            raise RuntimeError(f"the Java producer failed: {summary or 'no summary'}; see {self._log}")
        return int(summary.split()[1])


def _stream(pipe: IO[bytes] | None) -> IO[bytes]:
    if pipe is None:
        raise RuntimeError("the producer's pipe is missing")
    return pipe


@dataclass(frozen=True)
class Preload:
    records: int
    seconds: float  # in all, the producer's start-up included
    producer_start_up_s: float  # the JVM's start and the producer's compilation

    @property
    def records_per_s(self) -> float:
        sending_s = self.seconds - self.producer_start_up_s
        return self.records / sending_s if sending_s > 0 else 0.0


def preload(bootstrap_servers: str, traffic: Traffic, log: Path, report: Report) -> Preload:
    """Produce all the traffic as fast as Kafka takes it, reporting progress."""
    started = time.monotonic()
    producer = LineProducer(bootstrap_servers, log)
    producer.wait_ready()
    ready_after = time.monotonic() - started
    try:
        written, next_report = 0, time.monotonic() + PROGRESS_EVERY_S
        with traffic.path.open("rb") as lines:
            while block := lines.read(1 << 20):
                producer.write(block)  # whole lines or not, the pipe joins them again
                written += block.count(b"\n")
                if time.monotonic() >= next_report:
                    report(f"  {written}/{traffic.records} records handed to the producer")
                    next_report += PROGRESS_EVERY_S
    finally:
        sent = producer.close()
    return Preload(sent, time.monotonic() - started, ready_after)


def _chunks(messages: Iterable[RecordedMessage], size: int) -> Iterator[tuple[int, bytes]]:
    """Producer lines joined in chunks of `size`, with how many were made so far."""
    chunk: list[bytes] = []
    made = 0
    for message in messages:
        chunk.append(producer_line(message))
        made += 1
        if len(chunk) == size:
            yield made, b"".join(chunk)
            chunk = []
    if chunk:
        yield made, b"".join(chunk)


class PacedTraffic:
    """Hands traffic's lines to a producer at a steady rate, from a thread, until stopped.

    The phases of a run share one file of lines: each goes on where the
    previous one stopped, so no record is sent twice.
    """

    def __init__(self, producer: LineProducer, traffic: Traffic) -> None:
        self._producer = producer
        self._lines = traffic.path.open("rb")
        self.sent = 0
        self.exhausted = False
        self.last_run_s = 0.0  # how long the last start() sent for
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, rate: float, seconds: float) -> None:
        """Send at `rate` for at most `seconds` (stop() ends it sooner)."""
        self._stopping.clear()
        pace = threading.Thread(target=self._pace, args=(rate, seconds), name=f"traffic-{rate:.0f}", daemon=True)
        self._thread = pace
        pace.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def close(self) -> None:
        self.stop()
        self._lines.close()

    def _pace(self, rate: float, seconds: float) -> None:
        started, first = time.monotonic(), self.sent
        while not self._stopping.is_set() and not self.exhausted and time.monotonic() - started < seconds:
            due = first + int((time.monotonic() - started) * rate)
            lines = [line for line in (self._lines.readline() for _ in range(due - self.sent)) if line]
            if len(lines) < due - self.sent:
                self.exhausted = True
            if lines:
                self._producer.write(b"".join(lines))
                self.sent += len(lines)
            time.sleep(PACE_STEP_S)
        self.last_run_s = time.monotonic() - started
