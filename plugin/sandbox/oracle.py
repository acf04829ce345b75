"""Trusted run: expected outputs and reference times from the canonical solutions.

This runs in a container of its own in which no generated code ever runs. It uses EvalPlus's
``trusted_exec`` exactly as ``evalplus.evaluate.get_groundtruth`` does (same program text,
same inputs after EvalPlus's MBPP+ deserialization, same ``output_not_none`` tasks) and
writes one pickle per task plus a JSON manifest. The host reads only the manifest; the
pickles are loaded by evaluation containers (mounted read-only), never on the host.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from typing import Any

from . import protocol, runtime
from .pool import WorkerPool


def build(dataset_path: str, dataset: str, out_dir: str, workers: int) -> int:
    records = list(runtime.read_records(dataset_path))
    probe = runtime.calibration_probe()
    tasks_dir = os.path.join(out_dir, protocol.TASKS_DIRNAME)
    os.makedirs(tasks_dir, exist_ok=True)
    runtime.emit("hello", mode="oracle", tasks=len(records), probe_s=probe,
                 **runtime.describe_runtime())
    work = _make_work(records, dataset, tasks_dir)
    start = time.perf_counter()
    summaries = _run(records, work, workers)
    if summaries is None:
        return 1
    manifest = {
        "format": protocol.ORACLE_FORMAT, "dataset": dataset, "probe_s": probe,
        "elapsed_s": time.perf_counter() - start, "workers": workers,
        "tasks": summaries, **runtime.describe_runtime(),
    }
    _write_json(os.path.join(out_dir, protocol.MANIFEST_NAME), manifest)
    runtime.emit("done", mode="oracle", tasks=len(summaries), elapsed_s=manifest["elapsed_s"])
    return 0


def _make_work(records: list[dict[str, Any]], dataset: str, tasks_dir: str) -> Any:
    from evalplus.gen.util import trusted_exec

    from . import compat

    deserialize = compat.mbpp_codecs()[0] if dataset == "mbpp" else None
    not_none = compat.output_not_none_entry_points() if dataset == "mbpp" else []

    def work(index: int) -> dict[str, Any]:
        record = records[index]
        task_id = record["task_id"]
        base_input, plus_input = record["base_input"], record["plus_input"]
        if deserialize is not None:
            base_input = deserialize(task_id, base_input)
            plus_input = deserialize(task_id, plus_input)
        code = record["prompt"] + record["canonical_solution"]
        entry_point = record["entry_point"]
        only_not_none = entry_point in not_none
        started = time.perf_counter()
        base, base_time = trusted_exec(code, base_input, entry_point, record_time=True,
                                       output_not_none=only_not_none)
        plus, plus_time = trusted_exec(code, plus_input, entry_point, record_time=True,
                                       output_not_none=only_not_none)
        elapsed = time.perf_counter() - started
        payload = {
            "task_id": task_id, "entry_point": entry_point, "atol": record["atol"],
            "base_input": base_input, "plus_input": plus_input, "base": base,
            "base_time": base_time, "plus": plus, "plus_time": plus_time,
        }
        name = f"{index:04d}.pkl"
        _write_bytes(os.path.join(tasks_dir, name), pickle.dumps(payload, protocol=4))
        return {
            "index": index, "task_id": task_id, "file": name, "entry_point": entry_point,
            "n_base": len(base_input), "n_plus": len(plus_input),
            "base_time_sum": sum(base_time), "plus_time_sum": sum(plus_time),
            "max_time": max(base_time + plus_time, default=0.0), "elapsed_s": elapsed,
        }

    return work


def _run(records: list[dict[str, Any]], work: Any, workers: int) -> list[dict[str, Any]] | None:
    pool = WorkerPool(workers, work, setup=runtime.worker_setup, deadline_s=None)
    for index in range(len(records)):
        pool.submit(index)
    summaries: dict[int, dict[str, Any]] = {}
    try:
        for outcome in pool.run(heartbeat=lambda: runtime.emit("heartbeat")):
            if outcome.kind != "done" or outcome.result is None:
                task_id = records[outcome.job]["task_id"]
                runtime.emit("job_error", task_id=task_id,
                             error=outcome.reason or "canonical solution crashed")
                return None
            summaries[outcome.job] = outcome.result
            runtime.emit("progress", task_id=outcome.result["task_id"],
                         done=len(summaries), total=len(records))
    finally:
        pool.close()
    return [summaries[i] for i in range(len(records))]


def _write_bytes(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _write_json(path: str, obj: Any) -> None:
    _write_bytes(path, json.dumps(obj, indent=1).encode())
