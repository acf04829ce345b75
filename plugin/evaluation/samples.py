"""EvalPlus samples files (jsonl): read and validated."""

from __future__ import annotations

import json
from pathlib import Path

from plugin.datasets import Dataset
from plugin.errors import SamplesError


# --------------------------------------------------------------------------------------
# Samples files (EvalPlus format)
# --------------------------------------------------------------------------------------
def load_samples(path: Path, dataset: Dataset) -> dict[str, str]:
    """task_id -> program from an EvalPlus samples jsonl (``solution``, or ``completion``
    appended to the task's prompt). Raises SamplesError naming file:line."""
    solutions: dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SamplesError(f"cannot read samples file {path}: {exc}; fix: pass an existing "
                           "EvalPlus samples .jsonl with --samples") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        task_id, program = _parse_sample(path, number, line, dataset)
        if task_id in solutions:
            raise SamplesError(f"{path}:{number}: second sample for {task_id}; this harness "
                               "scores one sample per task (pass@1); fix: keep one per task")
        solutions[task_id] = program
    if not solutions:
        raise SamplesError(f"{path} holds no samples; fix: one JSON object per line with "
                           '"task_id" and "solution" (or "completion")')
    return solutions


def _parse_sample(path: Path, number: int, line: str, dataset: Dataset) -> tuple[str, str]:
    where = f"{path}:{number}"
    try:
        sample = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SamplesError(
            f"{where}: not JSON ({exc.msg}); fix: one JSON object per line") from None
    if not isinstance(sample, dict) or not isinstance(sample.get("task_id"), str):
        raise SamplesError(f'{where}: expected an object with a string "task_id"')
    task_id = sample["task_id"]
    if isinstance(sample.get("solution"), str):
        return task_id, sample["solution"]
    if isinstance(sample.get("completion"), str):
        task = dataset.tasks.get(task_id)
        if task is None:
            raise SamplesError(f"{where}: {task_id} is not a task of {dataset.label}, so its "
                               '"completion" has no prompt; fix: check --dataset')
        return task_id, task.prompt + sample["completion"]
    raise SamplesError(f'{where}: {task_id} has neither a string "solution" nor '
                       '"completion"; fix: add one (EvalPlus samples format)')
