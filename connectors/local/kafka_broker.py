"""A real Apache Kafka broker in KRaft mode: one node, loopback only.

The broker's jars come from Maven Central through connectors/local/pom.xml
(`make setup` writes their classpath to target/kafka.classpath).
"""

from __future__ import annotations

import base64
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from connectors.local.process import ManagedProcess, StartupError

CLASSPATH_FILE = Path(__file__).parent / "target" / "kafka.classpath"
HEAP = "-Xmx768m"

_LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
"""


def _server_properties(data_dir: Path, port: int, controller_port: int, partitions: int) -> str:
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
num.partitions={partitions}
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=-1
"""


@dataclass(frozen=True)
class KafkaBroker:
    state_dir: Path
    port: int
    controller_port: int
    partitions: int

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "kafka"

    @property
    def process(self) -> ManagedProcess:
        config = self.run_dir / "server.properties"
        return ManagedProcess("kafka", [*self._java(), "kafka.Kafka", str(config)], self.run_dir)

    def prepare(self) -> None:
        """Write the configuration, and format the storage on first use."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data_dir = self.run_dir / "data"
        config = self.run_dir / "server.properties"
        config.write_text(_server_properties(data_dir, self.port, self.controller_port, self.partitions))
        (self.run_dir / "log4j2.properties").write_text(_LOG4J2.format(log=self.run_dir / "server.log"))
        if not (data_dir / "meta.properties").exists():
            _format_storage(self._java(), config)

    def _java(self) -> list[str]:
        log4j = self.run_dir / "log4j2.properties"
        return ["java", HEAP, f"-Dlog4j2.configurationFile={log4j}", "-cp", _classpath()]


def _classpath() -> str:
    try:
        return CLASSPATH_FILE.read_text().strip()
    except FileNotFoundError:
        raise StartupError(f"{CLASSPATH_FILE} is missing: run `make setup` to resolve the Kafka jars.") from None


def _format_storage(java: list[str], config: Path) -> None:
    cluster_id = "-"
    while cluster_id.startswith("-"):  # as Kafka's Uuid.randomUuid: "-..." would read as an option
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    result = subprocess.run(
        [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StartupError(f"Formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
