"""The judged record of one profile x dataset (a report row)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
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


@dataclass(frozen=True)
class Row:
    """One profile x dataset as the report shows it: scores with their 95% intervals, the
    reference and the gate's verdict, the run's health and timings. Stored as JSON in the
    history and summary.json (:meth:`to_json`, :meth:`from_json`); read by key too, as
    the JSON it stands for (``row["gate"]``)."""

    run_id: str
    session: str
    machine: str
    recorded: str
    pinned: bool
    profile: str
    name: str
    quant: str
    dataset: str
    n_tasks: int
    partial: bool
    base_passed: int
    plus_passed: int
    base_pass_at_1: float  # percent
    plus_pass_at_1: float
    base_ci: list[float]  # Wilson 95% interval, percent
    plus_ci: list[float]
    reference: float | None  # what the gate compared with (file or baseline)
    reference_file: float | None  # the reference-scores.json value
    tolerance_pp: float
    provenance: str
    reference_model: str | None
    delta_pp: float | None
    gate: str  # a verdicts status (pass, fail_tolerance, ...)
    gate_message: str
    alpha: float
    baseline_run: str | None
    baseline_fingerprint: str | None
    paired: dict[str, Any] | None  # McNemar against the baseline (see _paired_json)
    no_answer: int
    thinking_exhausted: int
    truncated: int
    unjudged: int
    tokens_per_s: float | None
    requests_sent: int
    load_time_s: float
    gen_wall_s: float
    eval_wall_s: float
    build_info: str
    fingerprint: str
    out_dir: str
    #: chat or completion (PROMPT_MODE); None in rows recorded before it existed (chat).
    prompt_mode: str | None = None
    #: --bench-determinism: the N-slot run against this one (plugin.determinism); no gate.
    determinism: dict[str, Any] | None = None
    #: The sandbox's limit policy (--bench-limits); None in rows recorded before it existed.
    limits: str | None = None
    #: Verdicts decided by the clock (machine-sensitive): task id -> why.
    clock_decided: dict[str, str] | None = None
    #: What the fingerprint was computed from (runner.fingerprint_inputs).
    fingerprint_inputs: dict[str, Any] | None = None
    #: Differences of those inputs from the baseline run's ("max_tokens 768 -> 430"); []
    #: when none, None when there is no baseline run or its inputs were not stored.
    what_changed: list[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Row:
        """A row from its JSON; keys a row of an earlier version lacks are None."""
        values: dict[str, Any] = {f.name: data.get(f.name) for f in fields(cls)}
        return cls(**values)

    def __getitem__(self, key: str) -> Any:
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key) if key in _FIELDS else default


def result_row(result: BenchResult, reference: Reference, outcome: GateOutcome,
               info: RunInfo, what_changed: list[str] | None = None) -> Row:
    return Row(
        run_id=info.run_id, session=info.session, machine=info.machine,
        recorded=info.recorded, pinned=info.pinned,
        profile=result.profile, name=result.display_name, quant=result.quant,
        dataset=result.dataset, n_tasks=result.n_tasks, partial=result.partial,
        base_passed=result.base_passed, plus_passed=result.plus_passed,
        base_pass_at_1=result.base_pass_at_1, plus_pass_at_1=result.plus_pass_at_1,
        base_ci=_ci(result.base_passed, result.n_tasks),
        plus_ci=_ci(result.plus_passed, result.n_tasks),
        reference=outcome.reference, reference_file=reference.plus_pass_at_1,
        tolerance_pp=reference.tolerance_pp,
        provenance=outcome.reference_source or reference.provenance,
        reference_model=reference.reference_model,
        delta_pp=outcome.delta_pp, gate=outcome.status, gate_message=outcome.message,
        alpha=outcome.alpha, baseline_run=outcome.baseline_run,
        baseline_fingerprint=outcome.baseline_fingerprint, paired=_paired_json(outcome),
        no_answer=len(result.no_answer), thinking_exhausted=len(result.thinking_exhausted),
        truncated=len(result.truncated), unjudged=len(result.unjudged),
        tokens_per_s=result.generation.get("gen_tokens_per_s"),
        requests_sent=result.requests_sent,
        load_time_s=result.load_time_s, gen_wall_s=result.gen_wall_s,
        eval_wall_s=result.eval_wall_s, build_info=result.build_info,
        fingerprint=result.fingerprint, out_dir=result.out_dir,
        prompt_mode=result.prompt_mode,
        determinism=dict(result.determinism) if result.determinism else None,
        limits=result.limits, clock_decided=dict(result.clock_decided),
        fingerprint_inputs=dict(result.fingerprint_inputs) or None,
        what_changed=what_changed)


_FIELDS = frozenset(f.name for f in fields(Row))


def sorted_rows(rows: Iterable[Row]) -> list[Row]:
    """One row per run (the last one seen), in a stable order: profile, dataset, machine."""
    unique = {str(r.run_id or (r.profile, r.dataset)): r for r in rows}
    return sorted(unique.values(), key=lambda r: (r.profile, r.dataset, str(r.machine or "")))
