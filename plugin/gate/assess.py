"""Judge a result against its reference and baseline, and store it in the history."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugin.gate import history
from plugin.gate.record import RunInfo, result_row
from plugin.gate.references import Reference
from plugin.gate.stats import task_sort_key
from plugin.gate.verdicts import GateOutcome, judge
from plugin.generation.store import CompletionStore

if TYPE_CHECKING:
    from plugin.runner import BenchResult

# what the history keeps of a flipped task
FAIL_INPUT_CHARS = 300
CODE_CHARS = 4000


def _passed(verdicts: Mapping[str, Mapping[str, str]]) -> dict[str, bool]:
    return {t: v.get("base") == "pass" and v.get("plus") == "pass" for t, v in verdicts.items()}


def _read_eval(out_dir: Path) -> Mapping[str, Any]:
    try:
        data = json.loads((out_dir / "eval" / "eval_results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {t: (entries[0] if entries else {}) for t, entries in data.get("eval", {}).items()}


def _read_completions(out_dir: Path, fingerprint: str) -> Mapping[str, Any]:

    path = out_dir / "completions.jsonl"
    return CompletionStore(path).load(fingerprint) if path.exists() else {}


def _fail_input(entry: Mapping[str, Any]) -> str:
    for key in ("base_fail_tests", "plus_fail_tests"):
        tests = entry.get(key) or []
        if tests:
            text = json.dumps(tests[0])
            return text if len(text) <= FAIL_INPUT_CHARS else text[:FAIL_INPUT_CHARS] + " ..."
    return "none recorded: the program failed before its first input (no code, syntax " \
           "or import error) or timed out"


def _solution(entry: Mapping[str, Any], completion: Any) -> str:
    code = str(entry.get("solution") or "")
    if code.strip():
        return code[:CODE_CHARS]
    answer = str(getattr(completion, "content", "") or "")
    return f"(no code extracted; the answer began)\n{answer[:600]}"


def task_records(result: BenchResult, outcome: GateOutcome) -> list[history.TaskRecord]:
    """Per-task records; code and failing input only for the tasks that flipped."""
    out_dir = Path(result.out_dir)
    completions = _read_completions(out_dir, result.fingerprint)
    flips: dict[str, str] = {}
    if outcome.paired is not None:
        flips.update(dict.fromkeys(outcome.paired.regressed, "pass->fail"))
        flips.update(dict.fromkeys(outcome.paired.fixed, "fail->pass"))
    evals = _read_eval(out_dir) if flips else {}
    records = []
    for task_id in sorted(result.verdicts, key=task_sort_key):
        verdict, comp = result.verdicts[task_id], completions.get(task_id)
        flip = flips.get(task_id)
        entry = evals.get(task_id, {})
        records.append(history.TaskRecord(
            task_id=task_id, base=verdict.get("base", ""), plus=verdict.get("plus", ""),
            finish_reason=getattr(comp, "finish_reason", None),
            completion_tokens=getattr(comp, "completion_tokens", None),
            reasoning_tokens=getattr(comp, "reasoning_tokens", None),
            wall_s=getattr(comp, "wall_s", None), flip=flip,
            solution=_solution(entry, comp) if flip else None,
            fail_input=_fail_input(entry) if flip == "pass->fail" else None))
    return records


def _run_record(result: BenchResult, row: Mapping[str, Any], info: RunInfo,
                started: str) -> history.RunRecord:
    stats = dict(result.generation)
    for key in ("no_answer", "thinking_exhausted", "truncated", "unjudged"):
        stats[key] = list(getattr(result, key))
    stats["requests_sent"] = result.requests_sent
    return history.RunRecord(
        id=info.run_id, session=info.session, machine=info.machine, started=started,
        recorded=info.recorded, profile=result.profile, dataset=result.dataset,
        fingerprint=result.fingerprint, build=result.build_info, n_tasks=result.n_tasks,
        partial=result.partial, base_passed=result.base_passed,
        plus_passed=result.plus_passed, base_pass_at_1=result.base_pass_at_1,
        plus_pass_at_1=result.plus_pass_at_1, gate=str(row["gate"]), stats=stats,
        timings={"load_time_s": result.load_time_s, "gen_wall_s": result.gen_wall_s,
                 "eval_wall_s": result.eval_wall_s, "server_started": result.server_started},
        row=row)


def _started(recorded: str, result: BenchResult) -> str:
    end = datetime.datetime.strptime(recorded, "%Y-%m-%dT%H:%M:%SZ")
    begin = end - datetime.timedelta(seconds=result.gen_wall_s + result.eval_wall_s)
    return begin.strftime("%Y-%m-%dT%H:%M:%SZ")


def assess(db_path: Path, session: history.Session, result: BenchResult,
           reference: Reference, *, alpha: float, pin: bool = False,
           ) -> tuple[dict[str, Any], GateOutcome]:
    """Judge ``result`` with the full gate against the pinned baseline and store it.

    One write transaction: read the baseline, judge, store the run with its tasks, and
    pin it as the new baseline when ``pin`` (--bench-update-baseline). The run that pins
    is still judged against the previous baseline.
    """
    recorded = history.now_utc()
    info = RunInfo(run_id=history.run_id_for(session.session, session.machine,
                                             result.profile, result.dataset),
                   session=session.session, machine=session.machine, recorded=recorded,
                   pinned=pin)
    with history.opened(db_path) as conn, history.transaction(conn):
        history.record_session(conn, session)
        baseline = history.baseline(conn, result.profile, result.dataset)
        if baseline is not None and baseline.run_id == info.run_id:
            baseline = None  # the same run computed again: never judge it against itself
        outcome = judge(result.plus_pass_at_1, _passed(result.verdicts), reference, baseline,
                        partial=result.partial, alpha=alpha)
        row = result_row(result, reference, outcome, info)
        history.record_run(conn, _run_record(result, row, info, _started(recorded, result)),
                           task_records(result, outcome))
        if pin:
            history.pin_baseline(conn, info.run_id, pinned_by=session.session,
                                 pinned_at=recorded)
    return row, outcome
