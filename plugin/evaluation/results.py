"""Verdicts and results of an evaluation, the verdict journal and eval_results.json."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from plugin import atomic
from plugin.datasets import Dataset
from plugin.errors import SandboxError
from plugin.evaluation.plan import Plan
from plugin.sandbox import protocol

VERDICTS_NAME = "verdicts.jsonl"
RESULTS_NAME = "eval_results.json"
MISSING = "missing"


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskVerdict:
    """EvalPlus's verdict on one task: statuses "pass" | "fail" | "timeout" | "missing"."""

    task_id: str
    base_status: str
    plus_status: str
    base_fail_tests: list[Any] = field(default_factory=list)
    plus_fail_tests: list[Any] = field(default_factory=list)
    solution_key: str = ""  # sha256 of program + dataset + limits (see solution_key())
    wall_s: float = 0.0  # time the sandbox spent judging it (base + plus checks)
    cpu_s: float = 0.0  # CPU time of the processes that ran its tests
    error: str | None = None  # why the sandbox could not judge normally (worker killed...)
    resumed: bool = False  # taken from an earlier run's verdicts.jsonl
    quarantined: bool = False  # judged again alone (see docs/EVALUATION.md)
    #: Why the clock decided this verdict (a timeout, a pass near its time limit or past
    #: the other limit policy's), per part; None when it did not (docs/EVALUATION.md).
    clock: str | None = None

    @property
    def base_passed(self) -> bool:
        return self.base_status == protocol.PASS

    @property
    def plus_passed(self) -> bool:
        """HumanEval+/MBPP+ pass: base AND plus tests pass (EvalPlus's definition)."""
        return self.base_passed and self.plus_status == protocol.PASS


@dataclass(frozen=True)
class EvalResult:
    """Scores of one evaluation; pass@1 are fractions in [0, 1] over all tasks."""

    dataset: str
    verdicts: Mapping[str, TaskVerdict]  # every task of the dataset, in dataset order
    base_pass_at_1: float
    plus_pass_at_1: float
    n_tasks: int
    wall_s: float
    missing: tuple[str, ...] = ()  # tasks without a solution (scored as failures)
    unknown: tuple[str, ...] = ()  # solutions for task ids not in the dataset (ignored)
    n_judged: int = 0  # judged in this call
    n_resumed: int = 0  # reused from verdicts.jsonl
    results_path: Path | None = None

    def summary(self) -> dict[str, Any]:
        """The one-line summary printed by the CLI."""
        return {
            "dataset": self.dataset, "n_tasks": self.n_tasks,
            "base_pass_at_1": round(self.base_pass_at_1, 4),
            "plus_pass_at_1": round(self.plus_pass_at_1, 4),
            "base_passed": sum(v.base_passed for v in self.verdicts.values()),
            "plus_passed": sum(v.plus_passed for v in self.verdicts.values()),
            "missing": list(self.missing), "unknown": list(self.unknown),
            "clock_decided": len(self.clock_decided()),
            "judged": self.n_judged, "resumed": self.n_resumed,
            "wall_s": round(self.wall_s, 3),
            "results": str(self.results_path) if self.results_path else None,
        }

    def clock_decided(self) -> dict[str, str]:
        """Tasks whose verdict the clock decided, with why (machine-sensitive verdicts)."""
        return {t: v.clock for t, v in self.verdicts.items() if v.clock}




class Journal:
    """``verdicts.jsonl``: one JSON verdict per line, appended and flushed as judged."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def reusable(self, plan: Plan) -> dict[str, TaskVerdict]:
        wanted = {item.key: item.task_id for item in plan.items}
        found: dict[str, TaskVerdict] = {}
        for record in self._records():
            key = record.get("key")
            if key in wanted and record.get("task_id") == wanted[key]:
                found[key] = verdict_from_record(record, resumed=True)
        return found

    def _records(self) -> Iterator[dict[str, Any]]:
        if not self.path.is_file():
            return
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill: judged again
                    continue
                if isinstance(record, dict):
                    yield record

    def append(self, verdict: TaskVerdict) -> None:
        record = {"key": verdict.solution_key, **_verdict_record(verdict)}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()


def _verdict_record(verdict: TaskVerdict) -> dict[str, Any]:
    return {
        "task_id": verdict.task_id, "base_status": verdict.base_status,
        "plus_status": verdict.plus_status, "base_fail_tests": verdict.base_fail_tests,
        "plus_fail_tests": verdict.plus_fail_tests, "wall_s": round(verdict.wall_s, 4),
        "cpu_s": round(verdict.cpu_s, 4),
        "error": verdict.error, "quarantined": verdict.quarantined,
        "clock": verdict.clock,
    }


def verdict_from_record(record: Mapping[str, Any], *, resumed: bool) -> TaskVerdict:
    base, plus = record.get("base_status"), record.get("plus_status")
    if base not in protocol.STATUSES or plus not in protocol.STATUSES:
        raise SandboxError(f"invalid statuses {base!r}/{plus!r} for {record.get('task_id')!r}")
    base_tests, plus_tests = record.get("base_fail_tests"), record.get("plus_fail_tests")
    if not isinstance(base_tests, list) or not isinstance(plus_tests, list):
        raise SandboxError(f"invalid failed-test lists for {record.get('task_id')!r}")
    error = record.get("error")
    clock = record.get("clock")
    return TaskVerdict(
        task_id=str(record["task_id"]), base_status=str(base), plus_status=str(plus),
        base_fail_tests=base_tests, plus_fail_tests=plus_tests,
        solution_key=str(record["key"]), wall_s=float(record.get("wall_s") or 0.0),
        cpu_s=float(record.get("cpu_s") or 0.0),
        error=str(error) if error else None, resumed=resumed,
        quarantined=bool(record.get("quarantined")), clock=str(clock) if clock else None,
    )


# --------------------------------------------------------------------------------------
# eval_results.json (evalplus 0.3.1 format)
# --------------------------------------------------------------------------------------
def write_eval_results(path: Path, dataset: Dataset, solutions: Mapping[str, str],
                       verdicts: Mapping[str, TaskVerdict]) -> None:
    """Write ``eval_results.json`` like ``evalplus.evaluate`` 0.3.1 (atomically).

    Missing tasks appear with an empty solution and status "fail" (so pass@1 computed
    from this file equals ours) and are also listed under the extra key "missing".
    """
    results: dict[str, Any] = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "hash": dataset.evalplus_hash,
        "eval": {},
        "missing": [t for t, v in verdicts.items() if v.base_status == MISSING],
    }
    for task_id, verdict in verdicts.items():
        is_missing = verdict.base_status == MISSING
        results["eval"][task_id] = [{
            "task_id": task_id,
            "solution": solutions.get(task_id, ""),
            "base_status": protocol.FAIL if is_missing else verdict.base_status,
            "plus_status": protocol.FAIL if is_missing else verdict.plus_status,
            "base_fail_tests": verdict.base_fail_tests,
            "plus_fail_tests": verdict.plus_fail_tests,
        }]
    atomic.write_text(path, json.dumps(results))


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------
def make_dir(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SandboxError(f"cannot create {what} {path}: {exc}; fix: choose a writable "
                           "directory") from exc
