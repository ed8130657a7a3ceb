"""CPU accounting per process kind from /proc/<pid>/stat, children included.

A kind ("api", "worker", "redis", "postgres", "client", ...) is a set of root pids; its CPU is the user +
system time of every live process under those roots (gunicorn workers, Celery pool children, PostgreSQL
backends) plus the time of children they already reaped (cutime/cstime), so nothing is counted twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, CPU ticks of the process and its reaped children) for every live process."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
        # cutime cstime
        table[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    return table


def tree_cpu_seconds(roots: set[int], table: dict[int, tuple[int, int]] | None = None) -> float:
    """CPU seconds used so far by the processes in `roots` and all their live descendants."""
    table = table if table is not None else _stat_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    seen, todo, ticks = set(), [pid for pid in roots if pid in table], 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        ticks += table[pid][1]
        todo.extend(children.get(pid, ()))
    return ticks / TICKS


def pid_from_file(path: Path) -> int | None:
    """The pid in the first line of `path` (redis.pid, postmaster.pid), or None."""
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


class CpuMeter:
    """CPU seconds per process kind between `start()` and `stop()`.

    `kinds` maps a name to a function returning the root pids of that kind now (called at start and at
    stop, so processes started in between are not counted: start them first).
    """

    def __init__(self, kinds: dict[str, Callable[[], set[int]]]):
        self.kinds = kinds
        self.seconds: dict[str, float] = {}
        self.wall = 0.0

    def _sample(self) -> dict[str, float]:
        table = _stat_table()
        return {name: tree_cpu_seconds(pids(), table) for name, pids in self.kinds.items()}

    def start(self) -> None:
        """Remember the counters now."""
        self._wall = time.perf_counter()
        self._start = self._sample()

    def stop(self) -> None:
        """Store the CPU seconds used per kind since `start()`, and the wall time."""
        end = self._sample()
        self.wall = max(time.perf_counter() - self._wall, 1e-9)
        self.seconds = {name: max(end[name] - self._start.get(name, 0.0), 0.0) for name in end}

    def percent(self, name: str) -> float | None:
        """CPU of kind `name` as a percentage of one core over the measured wall time."""
        return 100 * self.seconds[name] / self.wall if name in self.seconds else None

    def ms_per(self, name: str, count: int) -> float | None:
        """CPU milliseconds of kind `name` per item, for `count` items."""
        return 1000 * self.seconds[name] / count if name in self.seconds and count else None
