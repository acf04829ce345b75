"""Shared helpers of the in-sandbox runner: output events, dataset records, calibration."""

from __future__ import annotations

import gzip
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from . import hardening


def emit(event: str, **fields: Any) -> None:
    """Write one JSON event line to stdout: the only way results leave the sandbox."""
    sys.stdout.write(json.dumps({"event": event, **fields}, default=repr) + "\n")
    sys.stdout.flush()


def read_records(path: str) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def calibration_probe(rounds: int = 5) -> float:
    """Seconds for a fixed pure-Python workload (best of ``rounds``): machine speed now."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        total = 0
        for i in range(300_000):
            total += i * i % 7
        best = min(best, time.perf_counter() - start)
    return best


def describe_runtime() -> dict[str, Any]:
    from .compat import evalplus_version

    return {
        "python": platform.python_version(),
        "evalplus": evalplus_version(),
        "cpus": os.cpu_count(),
        "pid": os.getpid(),
    }


def main_process_setup() -> None:
    """Harden the runner's own process (it writes the verdict stream)."""
    hardening.make_undumpable()
    hardening.become_subreaper()
    if os.getpid() == 1:
        hardening.ignore_termination_signals()


def worker_setup(slot: int) -> None:
    """Runs in each freshly forked worker before it takes jobs."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    hardening.silence_stdio()
    hardening.make_undumpable()
    hardening.become_subreaper()
    workdir = os.path.join(tempfile.gettempdir(), f"bench-worker-{slot}-{os.getpid()}")
    os.makedirs(workdir, exist_ok=True)
    os.environ["TMPDIR"] = workdir
    tempfile.tempdir = workdir


def wipe_worker_tmp() -> None:
    """Remove whatever the last solution left in this worker's temp directory."""
    workdir = tempfile.gettempdir()
    for name in os.listdir(workdir):
        path = os.path.join(workdir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass
