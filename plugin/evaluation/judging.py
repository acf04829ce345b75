"""Judge a set of solutions: plan, resume from the journal, run the backend, collect."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from filelock import FileLock, Timeout

from plugin.datasets import Dataset
from plugin.errors import SandboxError
from plugin.evaluation.backends import DEFAULT_IMAGE, SANDBOXES, Backend, make_backend
from plugin.evaluation.oracle import ensure_oracle
from plugin.evaluation.plan import Item, Limits, Plan, plan_of
from plugin.evaluation.results import (
    MISSING,
    RESULTS_NAME,
    VERDICTS_NAME,
    EvalResult,
    Journal,
    TaskVerdict,
    make_dir,
    verdict_from_record,
    write_eval_results,
)

log = logging.getLogger(__name__)




# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------
def evaluate_samples(
    dataset: Dataset,
    solutions: Mapping[str, str],
    out_dir: Path,
    *,
    sandbox: str = "docker",
    image: str = DEFAULT_IMAGE,
    workers: int | None = None,
    on_verdict: Callable[[TaskVerdict], None] | None = None,
    docker_client: Any = None,
    limits: Limits | None = None,
    cache_dir: Path | None = None,
) -> EvalResult:
    """Judge ``solutions`` (task_id -> full program) on ``dataset``; see the module docstring.

    ``on_verdict`` is called once per task of the dataset: first for reused verdicts, then
    as the sandbox judges, then for missing tasks. Raises SandboxError /
    DockerUnavailableError when the sandbox cannot run; verdicts already received are kept.
    """
    started = time.perf_counter()
    limits = limits or Limits()
    if sandbox not in SANDBOXES:
        raise SandboxError(f"unknown sandbox {sandbox!r}; fix: use one of {', '.join(SANDBOXES)}")
    out_dir = Path(out_dir)
    make_dir(out_dir, "the evaluation output directory")
    plan = plan_of(dataset, solutions, limits)
    notify = on_verdict or (lambda _v: None)
    with _exclusive(out_dir):
        journal = Journal(out_dir / VERDICTS_NAME)
        done = journal.reusable(plan)
        for verdict in done.values():
            notify(verdict)
        todo = [item for item in plan.items if item.key not in done]
        if todo:
            backend = make_backend(sandbox, image, docker_client)
            workers = _worker_count(workers)
            oracle_dir = ensure_oracle(dataset, backend, workers, cache_dir)
            stream = _judge(backend, oracle_dir, todo, workers, limits, out_dir)
            with contextlib.closing(stream):
                for verdict in stream:
                    journal.append(verdict)
                    done[verdict.solution_key] = verdict
                    notify(verdict)
    verdicts = _collect(dataset, plan, done, notify)
    result = _result(dataset, plan, verdicts, time.perf_counter() - started,
                     n_judged=len(todo), out_dir=out_dir)
    write_eval_results(out_dir / RESULTS_NAME, dataset, solutions, verdicts)
    return result










def _collect(dataset: Dataset, plan: Plan, done: Mapping[str, TaskVerdict],
             notify: Callable[[TaskVerdict], None]) -> dict[str, TaskVerdict]:
    by_task = {item.task_id: done[item.key] for item in plan.items if item.key in done}
    unjudged = [item.task_id for item in plan.items if item.task_id not in by_task]
    if unjudged:  # pragma: no cover - _judge raises before this
        raise SandboxError(f"the sandbox returned no verdict for {unjudged[:5]}")
    for task_id in plan.missing:
        verdict = TaskVerdict(task_id=task_id, base_status=MISSING, plus_status=MISSING,
                              error="no solution for this task")
        by_task[task_id] = verdict
        notify(verdict)
    return {t: by_task[t] for t in dataset.tasks}


def _result(dataset: Dataset, plan: Plan, verdicts: dict[str, TaskVerdict], wall: float,
            *, n_judged: int, out_dir: Path) -> EvalResult:
    n = len(dataset.tasks)
    base = sum(v.base_passed for v in verdicts.values())
    plus = sum(v.plus_passed for v in verdicts.values())
    return EvalResult(
        dataset=dataset.name, verdicts=MappingProxyType(verdicts),
        base_pass_at_1=base / n if n else 0.0, plus_pass_at_1=plus / n if n else 0.0,
        n_tasks=n, wall_s=wall, missing=plan.missing, unknown=plan.unknown,
        n_judged=n_judged, n_resumed=len(plan.items) - n_judged,
        results_path=out_dir / RESULTS_NAME,
    )


# --------------------------------------------------------------------------------------
# Judging
# --------------------------------------------------------------------------------------
def _judge(backend: Backend, oracle_dir: Path, todo: list[Item], workers: int,
           limits: Limits, out_dir: Path) -> Generator[TaskVerdict, None, None]:
    by_key = {item.key: item for item in todo}
    pending = dict(by_key)
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        solutions_file = Path(tmp) / "solutions.jsonl"
        with solutions_file.open("w", encoding="utf-8") as handle:
            for item in todo:
                handle.write(json.dumps({"key": item.key, "task_id": item.task_id,
                                         "solution": item.solution}) + "\n")
        solutions_file.chmod(0o644)
        Path(tmp).chmod(0o755)
        events = backend.run_evaluation(oracle_dir, solutions_file, workers, limits)
        with contextlib.closing(events):
            for event in events:
                kind = event.get("event")
                if kind == "job_error":
                    errors.append(f"{event.get('task_id')}: {event.get('error')}")
                elif kind == "verdict":
                    verdict = _accept(event, pending)
                    if verdict is not None:
                        yield verdict
    if errors or pending:
        left = ", ".join(sorted({i.task_id for i in pending.values()})[:8])
        raise SandboxError(
            f"the sandbox judged {len(todo) - len(pending)} of {len(todo)} solutions"
            + (f"; errors: {'; '.join(errors[:5])}" if errors else "")
            + (f"; unjudged: {left}" if left else "")
            + f". Verdicts so far are kept in {out_dir / VERDICTS_NAME}; fix the cause and "
            "run again to judge the rest"
        )


def _accept(event: Mapping[str, Any], pending: dict[str, Item]) -> TaskVerdict | None:
    """A verdict line from the sandbox, validated as data; None if unexpected."""
    item = pending.get(str(event.get("key")))
    if item is None or event.get("task_id") != item.task_id:
        log.warning("ignoring an unexpected verdict line from the sandbox: %.200s", event)
        return None
    verdict = verdict_from_record(event, resumed=False)
    del pending[item.key]
    return verdict


def _worker_count(workers: int | None) -> int:
    if workers is None:
        return max(1, os.cpu_count() or 1)
    if workers < 1:
        raise SandboxError(f"workers must be >= 1 (got {workers}); fix: --workers 1 or more")
    return workers






@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    lock = FileLock(str(out_dir / ".evaluation.lock"))
    try:
        lock.acquire(timeout=5)
    except Timeout:
        raise SandboxError(f"another evaluation is writing to {out_dir}; fix: wait for it or "
                           "use another output directory (--out)") from None
    try:
        yield
    finally:
        lock.release()
