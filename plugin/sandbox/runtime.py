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
    scratch_root()  # decided before workers are forked, so they all share it


# Scratch space of the workers. In the container (we are PID 1) that is all of /tmp, a
# private tmpfs; as a local subprocess it is a private directory under the system temp dir.
_scratch: dict[str, str] = {}


def scratch_root() -> str:
    if "root" not in _scratch:
        if os.getpid() == 1:
            _scratch["root"] = tempfile.gettempdir()
        else:
            _scratch["root"] = tempfile.mkdtemp(prefix="bench-sandbox-")
    return _scratch["root"]


def remove_private_scratch() -> None:
    root = _scratch.get("root")
    if root and os.getpid() != 1:
        shutil.rmtree(root, ignore_errors=True)


def worker_dir(slot: int, pid: int) -> str:
    return os.path.join(scratch_root(), f"bench-worker-{slot}-{pid}")


def worker_setup(slot: int) -> None:
    """Runs in each freshly forked worker before it takes jobs."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)
    hardening.silence_stdio()
    hardening.make_undumpable()
    hardening.become_subreaper()
    workdir = worker_dir(slot, os.getpid())
    os.makedirs(workdir, exist_ok=True)
    os.environ["TMPDIR"] = workdir
    tempfile.tempdir = workdir


def reset_worker_tmp() -> tuple[int, bool]:
    """Empty this worker's temp directory after a solution ran.

    Returns (bytes the solution left there, whether the directory had vanished: a sign that
    some solution tampered with the shared scratch space).
    """
    workdir = tempfile.gettempdir()
    if not os.path.isdir(workdir):
        os.makedirs(workdir, exist_ok=True)
        return 0, True
    return _remove_children(workdir), False


def sweep_scratch(keep: set[str]) -> int:
    """Remove entries of the scratch root that belong to no live worker; returns bytes."""
    root = scratch_root()
    removed = 0
    try:
        names = os.listdir(root)
    except OSError:
        return 0
    for name in names:
        if os.path.join(root, name) not in keep:
            removed += _remove(os.path.join(root, name)) or 1
    return removed


def _remove_children(directory: str) -> int:
    removed = 0
    for name in os.listdir(directory):
        removed += _remove(os.path.join(directory, name))
    return removed


def _remove(path: str) -> int:
    size = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                size += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            size += os.lstat(path).st_size
            os.unlink(path)
        except OSError:
            pass
    return size
