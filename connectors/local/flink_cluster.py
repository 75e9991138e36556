"""A standalone Flink session cluster on this machine: one JobManager and N TaskManagers.

Each is its own JVM, started from the Flink distribution inside the
apache-flink wheel. In thread mode every TaskManager embeds its own CPython,
so more TaskManagers (not more slots) is what gives Python operators more
cores. `FlinkSession` talks to any session cluster: it submits a Python job
with Flink's own CLI, and reads and cancels jobs through the REST API.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import site
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyflink
import yaml

from connectors.local import CHECKPOINTING
from connectors.local.process import ManagedProcess, StartupError

Report = Callable[[str], None]
FLINK_HOME = Path(pyflink.__file__).parent
READY_TIMEOUT_S = 120.0
SUBMIT_TIMEOUT_S = 300.0
PROGRESS_EVERY_S = 5.0
JOB_ID = re.compile(r"JobID ([0-9a-f]{32})")

# Console only: each process's stdout is its one log (ManagedProcess.log_file), the embedded Python's prints included.
_LOG4J_CONSOLE = """\
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = console
appender.console.name = console
appender.console.type = CONSOLE
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5p %-60c %x - %m%n
logger.pekko.name = org.apache.pekko
logger.pekko.level = WARN
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
logger.shaded_kafka.name = org.apache.flink.kafka.shaded.org.apache.kafka
logger.shaded_kafka.level = WARN
# The Kafka sink registers its committer's metrics again at every checkpoint; each time Flink warns of a name collision.
logger.metric_names.name = org.apache.flink.metrics.MetricGroup
logger.metric_names.level = ERROR
"""


class ClusterError(RuntimeError):
    """A Flink cluster did not answer, or refused a request; the message says which."""


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int | None
    ready: bool
    log: Path


@dataclass(frozen=True)
class FlinkCluster:
    """A session cluster whose configuration, logs, pid files and checkpoints live in run_dir."""

    run_dir: Path
    rest_port: int
    rpc_port: int

    @property
    def conf_dir(self) -> Path:
        return self.run_dir / "conf"

    @property
    def lib_dir(self) -> Path:
        return self.run_dir / "lib"

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def session(self) -> FlinkSession:
        return FlinkSession(f"http://127.0.0.1:{self.rest_port}")

    def jobmanager(self) -> ManagedProcess:
        return self._daemon("jobmanager", "jobmanager.sh")

    def taskmanager(self, number: int) -> ManagedProcess:
        name = f"taskmanager-{number}"
        # Its resource id is its name, so the REST API's list of TaskManagers tells which of ours registered.
        return self._daemon(name, "taskmanager.sh", "-D", f"taskmanager.resource-id={name}")

    def up(self, taskmanagers: int, report: Report) -> None:
        """Start the JobManager and TaskManagers 1..taskmanagers (those not running), and wait until all registered."""
        jobmanager = self.jobmanager()
        workers = [self.taskmanager(number) for number in range(1, taskmanagers + 1)]
        if jobmanager.pid() is None:  # else TaskManagers join the running cluster, as it is configured
            _require_free_ports(rest=self.rest_port, rpc=self.rpc_port)
            self._write_conf()
            self._link_lib()
        for process in [jobmanager, *workers]:
            if process.pid() is None:
                report(f"starting flink {process.name} (log: {process.log_file})")
                process.start()
        session = self.session
        jobmanager.wait_ready(session.is_reachable, READY_TIMEOUT_S, report)
        report(f"flink jobmanager ready: REST API and web UI on {session.url}")
        for worker in workers:
            self._wait_registered(worker, report)
        overview = session.overview()
        report(f"flink cluster ready: {overview['taskmanagers']} taskmanagers, {overview['slots-total']} slots")

    def _wait_registered(self, worker: ManagedProcess, report: Report) -> None:
        """Wait until the TaskManager registered; one that exits meanwhile is started once more, as a supervisor
        would: a TaskManager whose peer was killed may shut itself down on a fatal network error of its own
        (Flink 2.2: "exception in exception handler" while recycling the lost channel's buffers)."""
        is_registered = functools.partial(self.session.is_registered, worker.name)
        try:
            worker.wait_ready(is_registered, READY_TIMEOUT_S, report)
        except StartupError as exited:
            if worker.pid() is not None:
                raise  # not ready in time, but running: a second start would not help
            report(f"flink {worker.name} exited while starting ({str(exited).splitlines()[0]}); starting it again")
            worker.start()
            worker.wait_ready(is_registered, READY_TIMEOUT_S, report)

    def down(self, report: Report) -> None:
        # TaskManagers first (together: each takes seconds), or each would keep trying to reach the JobManager.
        workers = self._started_taskmanagers()
        with ThreadPoolExecutor() as pool:
            workers_were_running = list(pool.map(ManagedProcess.stop, workers))
        jobmanager = self.jobmanager()
        stopped = [*zip(workers, workers_were_running, strict=True), (jobmanager, jobmanager.stop())]
        for process, was_running in stopped:
            report(f"stopped flink {process.name}" if was_running else f"flink {process.name} was not running")

    def status(self) -> list[ProcessStatus]:
        jobmanager = self.jobmanager()
        jobmanager_ready = jobmanager.pid() is not None and self.session.is_reachable()
        registered = self.session.taskmanager_ids() if jobmanager_ready else set()
        statuses = [ProcessStatus(jobmanager.name, jobmanager.pid(), jobmanager_ready, jobmanager.log_file)]
        for worker in self._started_taskmanagers():
            pid = worker.pid()
            ready = pid is not None and worker.name in registered
            statuses.append(ProcessStatus(worker.name, pid, ready, worker.log_file))
        return statuses

    def _started_taskmanagers(self) -> list[ManagedProcess]:
        """The TaskManagers that have a pid file (running, or not yet known to have stopped)."""
        numbers = (int(pid.stem.removeprefix("taskmanager-")) for pid in self.run_dir.glob("taskmanager-*.pid"))
        return [self.taskmanager(number) for number in sorted(numbers)]

    def _daemon(self, name: str, script: str, *args: str) -> ManagedProcess:
        # start-foreground execs the JVM: the pid ManagedProcess keeps is the JVM's, and SIGTERM shuts it down cleanly.
        command = [str(FLINK_HOME / "bin" / script), "start-foreground", *args]
        env = {
            # Thread mode embeds CPython in the TaskManager's JVM, which knows nothing of this venv.
            "PYTHONPATH": os.pathsep.join(site.getsitepackages()),
            "FLINK_CONF_DIR": str(self.conf_dir),
            "FLINK_LIB_DIR": str(self.lib_dir),
            "FLINK_LOG_DIR": str(self.run_dir),
            "FLINK_PID_DIR": str(self.run_dir),  # Flink's scripts keep a pid list there; the default /tmp is shared
        }
        return ManagedProcess(name, command, self.run_dir, env)

    def _write_conf(self) -> None:
        """The distribution's conf dir, with this cluster's config.yaml and console-only logging."""
        shutil.copytree(FLINK_HOME / "conf", self.conf_dir, dirs_exist_ok=True)
        distribution = yaml.safe_load((FLINK_HOME / "conf" / "config.yaml").read_text())
        config = {**_flatten(distribution), **self._config()}
        (self.conf_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=True))
        (self.conf_dir / "log4j-console.properties").write_text(_LOG4J_CONSOLE)

    def _link_lib(self) -> None:
        """The distribution's lib with its Python runtime added (it ships in opt/). Loaded with each job
        instead, the second job on a TaskManager fails: the JVM has the embedded Python's native
        library already, from the first job's class loader (pemja: NoSuchFieldException loadedLibraryNames)."""
        shutil.rmtree(self.lib_dir, ignore_errors=True)  # links to an earlier PyFlink's jars would clash
        self.lib_dir.mkdir(parents=True)
        for jar in [*(FLINK_HOME / "lib").glob("*.jar"), *(FLINK_HOME / "opt").glob("flink-python-*.jar")]:
            (self.lib_dir / jar.name).symlink_to(jar)

    def _config(self) -> dict[str, str]:
        return {
            "jobmanager.rpc.address": "127.0.0.1",
            "jobmanager.rpc.port": str(self.rpc_port),
            "jobmanager.bind-host": "127.0.0.1",
            "taskmanager.host": "127.0.0.1",
            "taskmanager.bind-host": "127.0.0.1",
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "rest.port": str(self.rest_port),
            # Small enough for two cores and a shared machine. The hashmap state backend keeps state on the
            # heap, not in managed memory, and thread mode's Python needs none: managed memory stays small.
            "jobmanager.memory.process.size": "768m",
            "taskmanager.memory.process.size": "1536m",
            "taskmanager.memory.managed.size": "64m",
            "taskmanager.numberOfTaskSlots": "1",
            **CHECKPOINTING,
            "execution.checkpointing.dir": self.checkpoints.resolve().as_uri(),
            # Kafka's client threads outlive the job's class loader at cancel; the check only adds noise.
            "classloader.check-leaked-classloader": "false",
        }


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested YAML keys as Flink's dotted keys ({"rest": {"port": 1}} is {"rest.port": 1})."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _require_free_ports(**ports: int) -> None:
    for purpose, port in ports.items():
        with socket.socket() as probe:
            probe.setsockopt(
                socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
            )  # a port left in TIME_WAIT by a stopped cluster is free
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise StartupError(
                    f"Port {port} (the JobManager's {purpose} port) is in use, perhaps by another Flink cluster: "
                    f"stop it, or choose another port (`orderscope cluster up --{purpose}-port`)."
                ) from None


@dataclass(frozen=True)
class PythonJob:
    """What `flink run` ships to the cluster: the job file, the Python packages it imports
    (their modules and YAML files), and the connector jar it needs."""

    entry_point: Path
    packages: Sequence[Path]
    jar: Path

    def zip_packages(self, folder: Path) -> Path:
        """The packages in one zip, each at its root. Flink extracts a zip onto the workers' PYTHONPATH;
        a directory given to --pyFiles would itself go on the path, hiding its package name."""
        archive = folder / "python-packages.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for package in self.packages:
                for path in sorted(package.rglob("*")):
                    if path.suffix in {".py", ".yaml"} and "__pycache__" not in path.parts:
                        zipped.write(path, path.relative_to(package.parent))
        return archive


@dataclass(frozen=True)
class FlinkSession:
    """A Flink session cluster, reached at its REST address (for example http://127.0.0.1:8081)."""

    url: str

    def get(self, path: str) -> Any:
        return self._call(urllib.request.Request(f"{self.url}{path}"))

    def is_reachable(self) -> bool:
        try:
            self.get("/overview")
        except ClusterError:
            return False
        return True

    def overview(self) -> dict[str, Any]:
        overview: dict[str, Any] = self.get("/overview")
        return overview

    def taskmanager_ids(self) -> set[str]:
        return {taskmanager["id"] for taskmanager in self.get("/taskmanagers")["taskmanagers"]}

    def is_registered(self, taskmanager_id: str) -> bool:
        return self.is_reachable() and taskmanager_id in self.taskmanager_ids()

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the cluster knows, newest first: jid, name, state, start-time, ..."""
        jobs: list[dict[str, Any]] = self.get("/jobs/overview")["jobs"]
        return sorted(jobs, key=lambda job: job["start-time"], reverse=True)

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.get(f"/jobs/{job_id}")
        return job

    def job_taskmanagers(self, job_id: str) -> set[str]:
        """The TaskManagers running any of the job's tasks."""
        return {
            taskmanager["taskmanager-id"]
            for vertex in self.job(job_id)["vertices"]
            for taskmanager in self.get(f"/jobs/{job_id}/vertices/{vertex['id']}/taskmanagers")["taskmanagers"]
        }

    def exceptions(self, job_id: str) -> str:
        """The job's failures, newest first, as Flink reports them (one stack trace each)."""
        history = self.get(f"/jobs/{job_id}/exceptions")["exceptionHistory"]["entries"]
        return "\n\n".join(entry["stacktrace"] for entry in history) or "(no exceptions reported)"

    def cancel(self, job_id: str) -> None:
        self._call(urllib.request.Request(f"{self.url}/jobs/{job_id}?mode=cancel", method="PATCH"))

    def submit(self, job: PythonJob, log_dir: Path, report: Report) -> str:
        """Submit the job detached with `flink run`; returns its id. The job's main() runs in a Python
        process of the client, with this process's environment: its ORDERSCOPE_* variables decide."""
        report(f"submitting {job.entry_point.name} to {self.url} (the client builds the job graph first) ...")
        with tempfile.TemporaryDirectory() as scratch:
            command = [
                str(FLINK_HOME / "bin" / "flink"), "run", "--detached",
                "--jobmanager", urlsplit(self.url).netloc,
                "--python", str(job.entry_point),
                "--pyFiles", str(job.zip_packages(Path(scratch))),
                "--pyClientExecutable", sys.executable,
                "--pyExecutable", sys.executable,
                # Unlike -D pipeline.jars, --jarfile also puts the jar on the client's class path,
                # where the job's Kafka table is planned.
                "--jarfile", str(job.jar),
                # Python options are the job's own: the cluster's config.yaml does not reach them.
                "-D", "python.execution-mode=thread",
            ]  # fmt: skip
            env = {**os.environ, "FLINK_LOG_DIR": str(log_dir)}
            output = _run_with_progress(command, env, SUBMIT_TIMEOUT_S, report)
        match = JOB_ID.search(output)
        if match is None:
            tail = "\n".join(output.splitlines()[-25:])
            raise RuntimeError(f"`flink run` did not submit the job:\n{tail}\nThe client's log is in {log_dir}.")
        return match.group(1)

    def _call(self, request: urllib.request.Request) -> Any:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            reason = json.loads(error.read() or b"{}").get("errors", [error.reason])[0].splitlines()[0]
            raise ClusterError(f"{request.get_method()} {request.full_url}: {error.code} {reason}") from None
        except (urllib.error.URLError, TimeoutError) as error:
            reason = getattr(error, "reason", error)
            raise ClusterError(
                f"No Flink cluster answers at {self.url} ({reason}): is it up? `orderscope cluster status` tells."
            ) from None
        return json.loads(body) if body else None


def _run_with_progress(command: list[str], env: dict[str, str], timeout_s: float, report: Report) -> str:
    """Run command to its end, reporting progress while it runs; returns its output (stdout and stderr)."""
    started = time.monotonic()
    with subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        while True:
            try:
                output, _ = process.communicate(timeout=PROGRESS_EVERY_S)
                return output
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - started
                if elapsed > timeout_s:
                    process.kill()
                    raise RuntimeError(f"{command[0]} did not finish within {timeout_s:.0f} s") from None
                report(f"  still running ({elapsed:.0f} s)")
