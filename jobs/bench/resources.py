"""CPU time and memory of the processes under test, read from /proc once a second.

A watched part is a process and all its descendants (the job's Python process
and the JVM PyFlink launches). CPU is each process's own user + system time
(not its reaped children's, which would count a child twice); a process that
exits between two samples loses at most its last second. Peak RSS is the
largest sum of the tree's resident sets over the samples; the sum of each
process's own peak (VmHWM) is also kept, an upper bound since the peaks need
not coincide.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_EVERY_S = 1.0
MACHINE = "whole machine (all processes)"


def parent_pids() -> dict[int, int]:
    """Every live process's parent, from /proc/<pid>/stat."""
    parents = {}
    for stat in PROC.glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields is not None:
            parents[int(stat.parent.name)] = int(fields[1])
    return parents


def process_tree(root: int, parents: dict[int, int], other_roots: frozenset[int] = frozenset()) -> list[int]:
    """root and its descendants, except the subtrees of other_roots (parts watched on their own)."""
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    tree, todo = [], [root] if root in parents else []
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(child for child in children.get(pid, ()) if child not in other_roots)
    return tree


def cpu_seconds(pid: int) -> float | None:
    fields = _stat_fields(PROC / str(pid) / "stat")
    if fields is None:
        return None
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5), counted from state (3)
    return (utime + stime) / CLOCK_TICKS


def memory_bytes(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes (empty when it is gone)."""
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    found = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024
    return found


def _stat_fields(path: Path) -> list[str] | None:
    """The fields after the command name (which may hold spaces and parentheses): state first."""
    try:
        text = path.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text[text.rindex(")") + 2 :].split()


@dataclass
class PhaseUsage:
    cpu_s: float
    average_cores: float
    peak_rss_bytes: int
    seconds: float


@dataclass
class WatchedPart:
    """One process tree: CPU by process (a process that exits keeps its last value) and memory peaks."""

    root_pid: int
    cpu_by_pid: dict[int, float] = field(default_factory=dict)
    peak_hwm_by_pid: dict[int, int] = field(default_factory=dict)
    peak_rss_bytes: int = 0
    phase_peak_rss: dict[str, int] = field(default_factory=dict)
    phase_start_cpu: dict[str, tuple[float, float]] = field(default_factory=dict)  # phase: (monotonic, cpu)
    phases: dict[str, PhaseUsage] = field(default_factory=dict)

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu_by_pid.values())

    def sample(self, parents: dict[int, int], open_phases: list[str], other_roots: frozenset[int]) -> None:
        rss = 0
        for pid in process_tree(self.root_pid, parents, other_roots):
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self.cpu_by_pid[pid] = cpu
            memory = memory_bytes(pid)
            rss += memory.get("VmRSS", 0)
            self.peak_hwm_by_pid[pid] = max(self.peak_hwm_by_pid.get(pid, 0), memory.get("VmHWM", 0))
        self._note_rss(rss, open_phases)

    def _note_rss(self, rss: int, open_phases: list[str]) -> None:
        self.peak_rss_bytes = max(self.peak_rss_bytes, rss)
        for phase in open_phases:
            self.phase_peak_rss[phase] = max(self.phase_peak_rss.get(phase, 0), rss)

    def begin(self, phase: str) -> None:
        self.phase_start_cpu[phase] = (time.monotonic(), self.cpu_s)
        self.phase_peak_rss[phase] = 0

    def end(self, phase: str) -> None:
        started, cpu_then = self.phase_start_cpu.pop(phase)
        seconds, cpu = time.monotonic() - started, self.cpu_s - cpu_then
        peak = self.phase_peak_rss.pop(phase)
        self.phases[phase] = PhaseUsage(
            round(cpu, 2), round(cpu / seconds, 3) if seconds else 0.0, peak, round(seconds, 1)
        )


class WholeMachine(WatchedPart):
    """Every process on the machine, the bench's and any other's: on a shared machine, others' load
    skews every figure. CPU is the busy time of all cores (/proc/stat); memory is MemTotal - MemAvailable."""

    def __init__(self) -> None:
        super().__init__(root_pid=1)

    def sample(self, parents: dict[int, int], open_phases: list[str], other_roots: frozenset[int]) -> None:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (
            int(x) for x in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:9]
        )
        self.cpu_by_pid[0] = (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
        memory = {
            name: int(value.split()[0]) * 1024
            for name, _, value in (line.partition(":") for line in (PROC / "meminfo").read_text().splitlines())
        }
        self._note_rss(memory["MemTotal"] - memory["MemAvailable"], open_phases)


@dataclass(frozen=True)
class PartResources:
    """What the report says about one part: totals over the bench, and per phase."""

    pids: list[int]
    cpu_s: float
    peak_rss_bytes: int
    sum_of_process_peaks_bytes: int
    phases: dict[str, PhaseUsage]


class ResourceMonitor:
    """Samples the watched parts once a second, from a thread, for the whole bench."""

    def __init__(self) -> None:
        self._parts: dict[str, WatchedPart] = {MACHINE: WholeMachine()}
        self._open_phases: list[str] = []
        self._phase_order: list[str] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resources", daemon=True)

    def __enter__(self) -> ResourceMonitor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._thread.join()

    def watch(self, name: str, root_pid: int) -> None:
        """Watch a process tree from now on; it joins the phases under way."""
        with self._lock:
            part = self._parts[name] = WatchedPart(root_pid)
            self._sample_all()
            for phase in self._open_phases:
                part.begin(phase)

    def begin(self, phase: str) -> None:
        with self._lock:
            parents = self._sample_all()
            self._open_phases.append(phase)
            self._phase_order.append(phase)
            for part in self._parts.values():
                if part.root_pid in parents:  # a part stopped earlier has no share in this phase
                    part.begin(phase)

    def end(self, phase: str) -> None:
        with self._lock:
            self._sample_all()
            self._open_phases.remove(phase)
            for part in self._parts.values():
                if phase in part.phase_start_cpu:
                    part.end(phase)

    def results(self) -> dict[str, PartResources]:
        with self._lock:
            return {
                name: PartResources(
                    sorted(part.cpu_by_pid),
                    round(part.cpu_s, 2),
                    part.peak_rss_bytes,
                    sum(part.peak_hwm_by_pid.values()),
                    {phase: part.phases[phase] for phase in self._phase_order if phase in part.phases},
                )
                for name, part in self._parts.items()
            }

    def _run(self) -> None:
        while not self._stopping.wait(SAMPLE_EVERY_S):
            with self._lock:
                self._sample_all()

    def _sample_all(self) -> dict[int, int]:
        parents = parent_pids()
        roots = frozenset(part.root_pid for part in self._parts.values())
        for part in self._parts.values():
            phases = [phase for phase in self._open_phases if phase in part.phase_start_cpu]
            part.sample(parents, phases, roots - {part.root_pid})
        return parents
