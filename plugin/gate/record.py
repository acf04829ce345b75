"""The judged record of one profile x dataset (a report row)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from plugin.gate.references import Reference
from plugin.gate.stats import wilson_interval
from plugin.gate.verdicts import GateOutcome

if TYPE_CHECKING:
    from plugin.runner import BenchResult


def _ci(passed: int, n: int) -> list[float]:
    low, high = wilson_interval(passed, n).percent()
    return [round(low, 2), round(high, 2)]


def _paired_json(outcome: GateOutcome) -> dict[str, Any] | None:
    p = outcome.paired
    if p is None:
        return None
    return {"n_common": p.n_common, "b": p.b, "c": p.c, "p_value": p.p_value,
            "p_mid": p.p_mid, "regressed": list(p.regressed), "fixed": list(p.fixed)}


@dataclass(frozen=True)
class RunInfo:
    """Where and when a result was recorded (the history's keys)."""

    run_id: str
    session: str
    machine: str
    recorded: str
    pinned: bool = False


def result_row(result: BenchResult, reference: Reference, outcome: GateOutcome,
               info: RunInfo) -> dict[str, Any]:
    return {
        "run_id": info.run_id, "session": info.session, "machine": info.machine,
        "recorded": info.recorded, "pinned": info.pinned,
        "profile": result.profile, "name": result.display_name, "quant": result.quant,
        "dataset": result.dataset, "n_tasks": result.n_tasks, "partial": result.partial,
        "base_passed": result.base_passed, "plus_passed": result.plus_passed,
        "base_pass_at_1": result.base_pass_at_1, "plus_pass_at_1": result.plus_pass_at_1,
        "base_ci": _ci(result.base_passed, result.n_tasks),
        "plus_ci": _ci(result.plus_passed, result.n_tasks),
        "reference": outcome.reference, "reference_file": reference.plus_pass_at_1,
        "tolerance_pp": reference.tolerance_pp,
        "provenance": outcome.reference_source or reference.provenance,
        "reference_model": reference.reference_model,
        "delta_pp": outcome.delta_pp, "gate": outcome.status, "gate_message": outcome.message,
        "alpha": outcome.alpha, "baseline_run": outcome.baseline_run,
        "baseline_fingerprint": outcome.baseline_fingerprint, "paired": _paired_json(outcome),
        "no_answer": len(result.no_answer), "thinking_exhausted": len(result.thinking_exhausted),
        "truncated": len(result.truncated), "unjudged": len(result.unjudged),
        "tokens_per_s": result.generation.get("gen_tokens_per_s"),
        "requests_sent": result.requests_sent,
        "load_time_s": result.load_time_s, "gen_wall_s": result.gen_wall_s,
        "eval_wall_s": result.eval_wall_s, "build_info": result.build_info,
        "fingerprint": result.fingerprint, "out_dir": result.out_dir,
    }


def sorted_rows(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One row per run (the last one seen), in a stable order: profile, dataset, machine."""
    unique = {str(r.get("run_id") or (r["profile"], r["dataset"])): r for r in rows}
    return sorted(unique.values(), key=lambda r: (r["profile"], r["dataset"],
                                                  str(r.get("machine", ""))))
