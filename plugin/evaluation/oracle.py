"""The ground-truth cache: expected outputs of the canonical solutions, built once per dataset."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from plugin.cache import cache_root
from plugin.datasets import Dataset
from plugin.errors import SandboxError
from plugin.evaluation.backends import Backend
from plugin.evaluation.events import expect_done
from plugin.evaluation.results import make_dir
from plugin.sandbox import protocol

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# Oracle (expected outputs): trusted run, cached on the host
# --------------------------------------------------------------------------------------
def machine_fingerprint() -> dict[str, Any]:
    """What reference times depend on besides the runtime: CPU model and count."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"machine": platform.machine(), "cpu": model or platform.processor(),
            "cpus": os.cpu_count(), "node": platform.node()}


def ensure_oracle(dataset: Dataset, backend: Backend, workers: int,
                  cache_dir: Path | None = None) -> Path:
    """Directory with the expected outputs for ``dataset``: cached, or computed now."""
    fingerprint = {
        "dataset_sha256": dataset.sha256, "evalplus": protocol.EVALPLUS_VERSION,
        "format": protocol.ORACLE_FORMAT, "runtime": backend.runtime_id(),
        "machine": machine_fingerprint(),
    }
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()
    root = (cache_dir or cache_root()) / "oracles"
    make_dir(root, "the oracle cache (set BENCH_CACHE_DIR)")
    variant = "-mini" if dataset.mini else ""
    target = root / f"{dataset.name}-{dataset.version}{variant}-{digest[:16]}"
    with FileLock(str(target) + ".lock"):
        if _oracle_complete(target, dataset):
            return target
        _build_oracle(dataset, backend, workers, root, target, fingerprint)
    return target


def _oracle_complete(target: Path, dataset: Dataset) -> bool:
    try:
        manifest = json.loads((target / protocol.MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    ids = [t.get("task_id") for t in manifest.get("tasks", [])]
    return manifest.get("format") == protocol.ORACLE_FORMAT and set(dataset.tasks) <= set(ids)


def _build_oracle(dataset: Dataset, backend: Backend, workers: int, root: Path,
                  target: Path, fingerprint: Mapping[str, Any]) -> None:
    log.info("computing expected outputs of %s (trusted sandbox run)", dataset.label)
    work = Path(tempfile.mkdtemp(prefix=target.name + ".", suffix=".tmp", dir=root))
    try:
        (work / protocol.TASKS_DIRNAME).mkdir()
        for directory in (work, work / protocol.TASKS_DIRNAME):
            directory.chmod(0o777)  # the sandbox user (65534) writes here
        events = backend.run_oracle(dataset.path, dataset.name, work, workers)
        expect_done(events, "trusted oracle run")
        if not _oracle_complete(work, dataset):
            raise SandboxError(f"the trusted oracle run left no complete manifest in {work}")
        (work / "fingerprint.json").write_text(json.dumps(fingerprint, indent=1))
        for directory in (work, work / protocol.TASKS_DIRNAME):
            directory.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


