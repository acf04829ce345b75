"""The gate's decision: tolerance against the reference, McNemar against the baseline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from plugin.gate.references import Baseline, Reference
from plugin.gate.stats import Paired, paired_compare

#: significance level of the McNemar test when none is configured
DEFAULT_ALPHA = 0.05


# gate statuses
PASS = "pass"
FAIL_TOLERANCE = "fail_tolerance"
FAIL_DROP = "fail_drop"
FLAGGED_RISE = "flagged_rise"
NO_BASELINE = "no_baseline"
PARTIAL = "partial"
FAILING = frozenset({FAIL_TOLERANCE, FAIL_DROP})


#: what the report shows for each status
STATUS_LABEL = {
    PASS: "pass", FAIL_TOLERANCE: "FAIL (tolerance)", FAIL_DROP: "FAIL (significant drop)",
    FLAGGED_RISE: "pass, flagged rise", NO_BASELINE: "no baseline yet",
    PARTIAL: "partial (not gated)",
}


@dataclass(frozen=True)
class GateOutcome:
    status: str
    delta_pp: float | None
    message: str
    reference: float | None = None  # the reference the tolerance was applied to
    reference_source: str = ""  # provenance of that reference
    tolerance_pp: float | None = None
    alpha: float = DEFAULT_ALPHA
    baseline_run: str | None = None
    baseline_fingerprint: str | None = None
    paired: Paired | None = None

    @property
    def ok(self) -> bool:
        return self.status not in FAILING and self.status != "fail"

    @property
    def flagged(self) -> bool:
        return self.status == FLAGGED_RISE

    @property
    def label(self) -> str:
        return STATUS_LABEL.get(self.status, self.status)




def baseline_provenance(baseline: Baseline) -> str:
    where = f" ({baseline.source})" if baseline.source else ""
    return (f"local baseline{where}: run {baseline.run_id}, "
            f"fingerprint {baseline.fingerprint[:12]}")


def _effective_reference(reference: Reference, baseline: Baseline | None,
                         tasks: Mapping[str, bool], partial: bool) -> tuple[float | None, str]:
    """The pass@1 the tolerance applies to: the file's reference (whole datasets only),
    else the baseline's, when it was judged on the same tasks as this run (a whole
    dataset, or exactly this subset)."""
    if reference.plus_pass_at_1 is not None and not partial:
        return float(reference.plus_pass_at_1), reference.provenance
    same_tasks = set(baseline.passed) == set(tasks) if baseline is not None else False
    if baseline is not None and (same_tasks if partial else not baseline.partial):
        return baseline.plus_pass_at_1, baseline_provenance(baseline)
    return None, ""


def _list(tasks: tuple[str, ...], limit: int = 10) -> str:
    more = f" (+{len(tasks) - limit} more)" if len(tasks) > limit else ""
    return ", ".join(tasks[:limit]) + more


def _paired_text(paired: Paired, alpha: float) -> str:
    verdict = "significant" if paired.p_value < alpha else "not significant"
    text = (f"vs baseline on {paired.n_common} common tasks: {paired.b} pass->fail, "
            f"{paired.c} fail->pass, exact McNemar p = {paired.p_value:.3g} "
            f"({verdict} at alpha {alpha:g})")
    if paired.regressed:
        text += f"; pass->fail: {_list(paired.regressed)}"
    if paired.fixed:
        text += f"; fail->pass: {_list(paired.fixed)}"
    return text


def judge(plus_pass_at_1: float, passed: Mapping[str, bool], reference: Reference,
          baseline: Baseline | None, *, partial: bool = False,
          alpha: float = DEFAULT_ALPHA) -> GateOutcome:
    """The full gate (README "Gate"). ``passed``: task -> passed base and plus.

    In order: below reference - tolerance -> fail_tolerance; significant McNemar drop
    against the baseline -> fail_drop; above reference + tolerance, or a significant
    McNemar rise -> flagged_rise (passes); neither reference nor baseline ->
    no_baseline (passes). A partial run (--bench-limit, TASKS) is never compared with the
    file's reference (that is for the whole dataset): task by task with the baseline, and
    with the baseline's pass@1 when that baseline ran exactly the same tasks (status
    partial without a baseline).
    """
    ref, source = _effective_reference(reference, baseline, passed, partial)
    paired = paired_compare(baseline.passed, passed) if baseline is not None else None
    delta = round(plus_pass_at_1 - ref, 2) if ref is not None else None
    status, why = _decide(plus_pass_at_1, ref, reference.tolerance_pp,
                          paired, alpha, baseline is not None, partial)
    head = f"{reference.profile}: {reference.dataset}+ pass@1 {plus_pass_at_1:.2f}%"
    if ref is not None:
        head += (f", reference {ref:.2f}% +/- {reference.tolerance_pp:.2f} pp "
                 f"(delta {delta:+.2f} pp; {source})")
    tail = f"; {_paired_text(paired, alpha)}" if paired is not None else ""
    return GateOutcome(
        status, delta, f"{head}: {why}{tail}", reference=ref, reference_source=source,
        tolerance_pp=reference.tolerance_pp, alpha=alpha,
        baseline_run=baseline.run_id if baseline else None,
        baseline_fingerprint=baseline.fingerprint if baseline else None, paired=paired)


def _decide(score: float, ref: float | None, tol: float, paired: Paired | None, alpha: float,
            has_baseline: bool, partial: bool) -> tuple[str, str]:
    """(status, reason); ``ref`` is None when the tolerance does not apply."""
    significant = paired is not None and paired.p_value < alpha
    if ref is not None and score + 1e-9 < ref - tol:
        return FAIL_TOLERANCE, f"FAIL: below reference - tolerance = {ref - tol:.2f}%"
    if significant and paired is not None and paired.b > paired.c:
        return FAIL_DROP, "FAIL: significant drop against the pinned baseline"
    if ref is not None and score - 1e-9 > ref + tol:
        return FLAGGED_RISE, (f"above reference + tolerance = {ref + tol:.2f}%: passes, "
                              "flagged for review (new template? leaked answers? evaluator?)")
    if significant:
        return FLAGGED_RISE, ("significantly better than the pinned baseline: passes, "
                              "flagged for review")
    if not has_baseline and (ref is None or partial):
        if partial:
            return PARTIAL, ("partial run (--bench-limit, TASKS) without a pinned baseline: "
                             "not gated")
        return NO_BASELINE, ("no reference and no pinned baseline yet: passes; pin one "
                             "with --bench-update-baseline")
    return PASS, "pass"
