"""Metrics of an API served by several gunicorn processes: prometheus-client's multiprocess mode.

Every API process writes its counters, histograms and live gauges to files in one directory
(PROMETHEUS_MULTIPROC_DIR) and `/metrics` sums them (`app.metrics.exposition`), so each scrape reports the whole
API whichever process answers it. `collab-bus api` always runs this way, even with one process: a worker gunicorn
restarts keeps the counts of the one it replaces.

The master prepares the directory before it forks any worker and marks each exited worker dead, so that the
sockets it held stop counting. prometheus_client chooses its mode when it is first imported: this module imports
it only inside functions, and the master must not import it before `prepare()` (the workers it forks would
inherit single-process metrics). The other commands (`up`, `worker`, `beat`) are one process each and keep their
metrics in memory: `keep_single_process()`.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

from app.config import ConfigError, Settings

log = logging.getLogger(__name__)

ENV_NAMES = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")  # prometheus_client reads both


class MetricsDirectory:
    """The directory the API's processes share their metrics in; `remove()` deletes it when this process made it."""

    def __init__(self, path: Path, owned: bool):
        self.path = path
        self.owned = owned
        self.creator = os.getpid()

    def remove(self) -> None:
        """Delete the directory if it is a private one this process created (no-op in forked workers)."""
        if self.owned and os.getpid() == self.creator:
            shutil.rmtree(self.path, ignore_errors=True)


def prepare(settings: Settings) -> MetricsDirectory:
    """Export PROMETHEUS_MULTIPROC_DIR to the processes about to be started: the operator's directory
    (`settings.metrics_multiproc_dir`, created if missing and emptied of an earlier run's files) or a fresh
    private one. Raise ConfigError when the operator's directory cannot be used."""
    if "prometheus_client" in sys.modules:
        raise RuntimeError("prometheus_client was imported before the metrics directory was exported")
    if settings.metrics_multiproc_dir is None:
        directory = MetricsDirectory(Path(tempfile.mkdtemp(prefix="collab-bus-metrics-")), owned=True)
    else:
        directory = MetricsDirectory(settings.metrics_multiproc_dir, owned=False)
        try:
            directory.path.mkdir(parents=True, exist_ok=True)
            for stale in directory.path.glob("*.db"):
                stale.unlink()
        except OSError as exc:
            raise ConfigError(f"PROMETHEUS_MULTIPROC_DIR {directory.path}: {exc.strerror or exc}") from None
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory.path)
    log.info("API metrics of every process are shared in %s", directory.path)
    return directory


def worker_exited(pid: int) -> None:
    """Forget the live gauges (open sockets) of API process `pid`, which exited; its counters still count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def keep_single_process() -> None:
    """Make this process keep its metrics in memory (a command that runs one process: up, worker, beat),
    whatever PROMETHEUS_MULTIPROC_DIR says; warn when it was set."""
    dropped = [name for name in ENV_NAMES if os.environ.pop(name, None)]
    if dropped:
        log.warning("%s ignored: this command is one process and serves its own metrics", dropped[0])
