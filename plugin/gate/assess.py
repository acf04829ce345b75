"""Judge a result against its reference and baseline, and store it in the history."""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from pathlib import Path

from plugin.gate import history, programs
from plugin.gate.changes import what_changed
from plugin.gate.record import Row, RunInfo, result_row
from plugin.gate.references import Reference
from plugin.gate.stats import task_sort_key
from plugin.gate.verdicts import GateOutcome, judge
from plugin.runner import BenchResult, TaskFacts

# what the history keeps of a flipped task
FAIL_INPUT_CHARS = 300
CODE_CHARS = 4000


def _passed(verdicts: Mapping[str, Mapping[str, str]]) -> dict[str, bool]:
    return {t: v.get("base") == "pass" and v.get("plus") == "pass" for t, v in verdicts.items()}


def _fail_input(facts: TaskFacts | None) -> str:
    if facts is not None and facts.first_failing_input is not None:
        text = json.dumps(facts.first_failing_input)
        return text if len(text) <= FAIL_INPUT_CHARS else text[:FAIL_INPUT_CHARS] + " ..."
    return "none recorded: the program failed before its first input (no code, syntax " \
           "or import error) or timed out"


def _solution(facts: TaskFacts | None) -> str:
    code = facts.solution if facts is not None else ""
    if code.strip():
        return code[:CODE_CHARS]
    answer = facts.answer if facts is not None else ""
    return f"(no code extracted; the answer began)\n{answer[:600]}"


def task_records(result: BenchResult, outcome: GateOutcome) -> list[history.TaskRecord]:
    """Per-task records; code and failing input only for the tasks that flipped."""
    flips: dict[str, str] = {}
    if outcome.paired is not None:
        flips.update(dict.fromkeys(outcome.paired.regressed, "pass->fail"))
        flips.update(dict.fromkeys(outcome.paired.fixed, "fail->pass"))
    records = []
    for task_id in sorted(result.verdicts, key=task_sort_key):
        verdict, facts = result.verdicts[task_id], result.tasks.get(task_id)
        flip = flips.get(task_id)
        records.append(history.TaskRecord(
            task_id=task_id, base=verdict.get("base", ""), plus=verdict.get("plus", ""),
            finish_reason=facts.finish_reason if facts else None,
            completion_tokens=facts.completion_tokens if facts else None,
            reasoning_tokens=facts.reasoning_tokens if facts else None,
            wall_s=facts.wall_s if facts else None, flip=flip,
            solution=_solution(facts) if flip else None,
            fail_input=_fail_input(facts) if flip == "pass->fail" else None))
    return records


def _run_record(result: BenchResult, row: Row, info: RunInfo,
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
        plus_pass_at_1=result.plus_pass_at_1, gate=str(row.gate), stats=stats,
        timings={"load_time_s": result.load_time_s, "gen_wall_s": result.gen_wall_s,
                 "eval_wall_s": result.eval_wall_s, "server_started": result.server_started},
        row=row.to_json())


def _started(recorded: str, result: BenchResult) -> str:
    end = datetime.datetime.strptime(recorded, "%Y-%m-%dT%H:%M:%SZ")
    begin = end - datetime.timedelta(seconds=result.gen_wall_s + result.eval_wall_s)
    return begin.strftime("%Y-%m-%dT%H:%M:%SZ")


def assess(db_path: Path, session: history.Session, result: BenchResult,
           reference: Reference, *, alpha: float, pin: bool = False,
           ) -> tuple[Row, GateOutcome]:
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
        baseline = history.baseline(conn, result.profile, result.dataset) or reference.pinned
        if baseline is not None and baseline.run_id == info.run_id:
            baseline = None  # the same run computed again: never judge it against itself
        outcome = judge(result.plus_pass_at_1, _passed(result.verdicts), reference, baseline,
                        partial=result.partial, alpha=alpha)
        before = history.run_row(conn, baseline.run_id) if baseline is not None else None
        changed = what_changed(before.fingerprint_inputs if before else None,
                               result.fingerprint_inputs)
        row = result_row(result, reference, outcome, info, changed)
        history.record_run(conn, _run_record(result, row, info, _started(recorded, result)),
                           task_records(result, outcome))
        programs.record(conn, info.run_id, {t: f.solution for t, f in result.tasks.items()})
        if pin:
            history.pin_baseline(conn, info.run_id, pinned_by=session.session,
                                 pinned_at=recorded)
    return row, outcome
