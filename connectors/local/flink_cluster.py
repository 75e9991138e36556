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
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyflink
import yaml

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
"""


def _python_environment() -> dict[str, str]:
    """What a Flink process started from here needs to find this venv's Python: its `python`
    first on PATH (Flink's scripts call it), and (thread mode embeds CPython in the JVM)
    the venv's packages on PYTHONPATH, since an embedded interpreter does not read the venv."""
    return {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(site.getsitepackages()),
    }


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
        if jobmanager.pid() is None:
            _require_free_ports(rest=self.rest_port, rpc=self.rpc_port)
        self._write_conf()
        for process in [jobmanager, *workers]:
            if process.pid() is None:
                report(f"starting flink {process.name} (log: {process.log_file})")
                process.start()
        session = self.session
        jobmanager.wait_ready(session.is_reachable, READY_TIMEOUT_S, report)
        report(f"flink jobmanager ready: REST API and web UI on {session.url}")
        for worker in workers:
            worker.wait_ready(functools.partial(session.is_registered, worker.name), READY_TIMEOUT_S, report)
        overview = session.overview()
        report(f"flink cluster ready: {overview['taskmanagers']} taskmanagers, {overview['slots-total']} slots")

    def down(self, report: Report) -> None:
        # TaskManagers first: stopped after their JobManager, each would keep trying to reach it until stopped.
        for process in [*self._started_taskmanagers(), self.jobmanager()]:
            report(f"stopped flink {process.name}" if process.stop() else f"flink {process.name} was not running")

    def status(self) -> list[ProcessStatus]:
        jobmanager = self.jobmanager()
        jobmanager_ready = jobmanager.pid() is not None and self.session.is_reachable()
        registered = self.session.taskmanager_ids() if jobmanager_ready else set()
        statuses = [ProcessStatus(jobmanager.name, jobmanager.pid(), jobmanager_ready, jobmanager.log_file)]
        for worker in self._started_taskmanagers():
            pid = worker.pid()
            statuses.append(ProcessStatus(worker.name, pid, pid is not None and worker.name in registered, worker.log_file))
        return statuses

    def _started_taskmanagers(self) -> list[ManagedProcess]:
        numbers = sorted(int(pid_file.stem.removeprefix("taskmanager-")) for pid_file in self._taskmanager_pid_files())
        return [self.taskmanager(number) for number in numbers]

    def _taskmanager_pid_files(self) -> list[Path]:
        return list(self.run_dir.glob("taskmanager-*.pid"))

    def _daemon(self, name: str, script: str, *args: str) -> ManagedProcess:
        # start-foreground execs the JVM: the pid ManagedProcess keeps is the JVM's, and SIGTERM shuts it down cleanly.
        command = [str(FLINK_HOME / "bin" / script), "start-foreground", *args]
        env = {
            **_python_environment(),
            "FLINK_CONF_DIR": str(self.conf_dir),
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
            "python.execution-mode": "thread",
            "python.executable": sys.executable,
            "state.backend.type": "hashmap",
            "execution.checkpointing.dir": self.checkpoints.resolve().as_uri(),
            "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
            "execution.checkpointing.num-retained": "2",
            "restart-strategy.type": "exponential-delay",
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
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                raise StartupError(
                    f"Port {port} (the JobManager's {purpose} port) is in use, perhaps by another Flink cluster: "
                    f"stop it, or choose another port (`orderscope cluster up --{purpose}-port`)."
                ) from None


@dataclass(frozen=True)
class PythonJob:
    """What `flink run` ships to the cluster: the job file, the Python packages it imports, the jars it needs."""

    entry_point: Path
    packages: Sequence[Path]
    jars: Sequence[Path]


@dataclass(frozen=True)
class FlinkSession:
    """A Flink session cluster, reached at its REST address (for example http://127.0.0.1:8081)."""

    url: str

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
            return json.load(response)

    def is_reachable(self) -> bool:
        try:
            self.get("/overview")
        except OSError:
            return False
        return True

    def overview(self) -> dict[str, Any]:
        overview: dict[str, Any] = self.get("/overview")
        return overview

    def taskmanager_ids(self) -> set[str]:
        return {taskmanager["id"] for taskmanager in self.get("/taskmanagers")["taskmanagers"]}

    def is_registered(self, taskmanager_id: str) -> bool:
        return self.is_reachable() and taskmanager_id in self.taskmanager_ids()

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
        request = urllib.request.Request(f"{self.url}/jobs/{job_id}?mode=cancel", method="PATCH")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def submit(self, job: PythonJob, log_dir: Path, report: Report) -> str:
        """Submit the job detached with `flink run`; returns its id. The job reads its settings from the
        ORDERSCOPE_* variables of this process, which the client passes on to it."""
        if not job.jars:
            raise FileNotFoundError("No Flink connector jar to ship with the job: run `make setup`.")
        command = [
            str(FLINK_HOME / "bin" / "flink"), "run", "--detached",
            "--jobmanager", urlsplit(self.url).netloc,
            "--python", str(job.entry_point),
            "--pyFiles", ",".join(str(package) for package in job.packages),
            "--pyClientExecutable", sys.executable,
            "--pyExecutable", sys.executable,
            "--jarfile", str(job.jars[0]),
            "-D", "python.execution-mode=thread",
        ]  # fmt: skip
        env = {**os.environ, **_python_environment(), "FLINK_LOG_DIR": str(log_dir)}
        report(f"submitting {job.entry_point.name} to {self.url} (the client builds the job graph first) ...")
        output = _run_with_progress(command, env, SUBMIT_TIMEOUT_S, report)
        match = JOB_ID.search(output)
        if match is None:
            tail = "\n".join(output.splitlines()[-25:])
            raise RuntimeError(f"`flink run` did not submit the job:\n{tail}\nClient log in {log_dir}.")
        return match.group(1)


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
