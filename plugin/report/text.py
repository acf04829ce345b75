"""Rows rendered as text: the terminal table, REPORT.md, the profile list."""

from __future__ import annotations

import datetime
import textwrap
from collections.abc import Iterable, Mapping, Sequence

from plugin.config.profile import Profile
from plugin.gate.record import Row, sorted_rows
from plugin.gate.references import Published
from plugin.gate.verdicts import STATUS_LABEL
from plugin.report.html import (
    DATASET_TITLE,
    comparison_table,
    flips_text,
    fmt_interval,
    fmt_pct,
    fmt_pp,
    fmt_ref,
    gate_label,
    quant_label,
)


def unscored_lines(unscored: Sequence[Mapping[str, str]]) -> list[str]:
    """One line per selected profile x dataset that produced no score, with its reason."""
    return [f"{u['profile']} ({u['dataset']}): {u['outcome']}: {u['reason']}"
            for u in sorted(unscored, key=lambda u: (u["profile"], u["dataset"]))]


TERMINAL_WIDTH = 120
TERMINAL_COLUMNS = ("Profile", "Data", "Quant", "plus [95% CI]", "passed", "Reference",
                    "Delta", "Gate", "NoAns", "Trunc", "tok/s")
_SHORT_DATASET = {"humaneval": "HE+", "mbpp": "MBPP+"}
_SHORT_GATE = {"pass": "pass", "fail_tolerance": "FAIL tol", "fail_drop": "FAIL drop",
               "flagged_rise": "flagged", "no_baseline": "no base", "partial": "partial"}
TERMINAL_LEGEND = ("tok/s: decode speed per request (llama.cpp timings; the progress lines "
                   "show aggregate throughput); Reference (b): the pinned baseline; Gate "
                   "and flips: README \"Gate\"")


def _terminal_cells(r: Row) -> list[str]:
    ci = f" [{r.plus_ci[0]:.1f},{r.plus_ci[1]:.1f}]" if r.plus_ci else ""
    ref = "-" if r.reference is None else (
        fmt_pct(r.reference) + (" (b)" if r.reference_file is None else ""))
    return [r.profile, _SHORT_DATASET.get(str(r.dataset), str(r.dataset)), quant_label(r),
            fmt_pct(r.plus_pass_at_1) + ci, f"{r.plus_passed}/{r.n_tasks}", ref,
            fmt_pp(r.delta_pp), _SHORT_GATE.get(str(r.gate), str(r.gate)), str(r.no_answer),
            str(r.truncated), "-" if r.tokens_per_s is None else f"{r.tokens_per_s:.0f}"]


def terminal_lines(rows: Sequence[Row], width: int = TERMINAL_WIDTH) -> list[str]:
    """The final table: at most ``width`` columns (long profile and quant names are cut
    with "~"), then one line per row whose tasks flipped against the baseline."""
    rows = sorted_rows(rows)
    cells = [_terminal_cells(r) for r in rows]
    widths = [max(len(TERMINAL_COLUMNS[i]), *(len(c[i]) for c in cells))
              for i in range(len(TERMINAL_COLUMNS))]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    for column in (2, 0):  # quant, then profile
        cut = min(max(0, excess), widths[column] - 8)
        widths[column] -= cut
        excess -= cut

    def fit(values: Sequence[str]) -> str:
        return "  ".join((v if len(v) <= w else v[:w - 1] + "~").ljust(w)
                         for v, w in zip(values, widths, strict=True)).rstrip()

    lines = [fit(TERMINAL_COLUMNS), *(fit(c) for c in cells)]
    for r in rows:
        paired = r.paired
        if paired and (paired["b"] or paired["c"]):
            lines += textwrap.wrap(f"{r.profile} ({r.dataset}): flips against the baseline: "
                                   f"{paired['b']} down, {paired['c']} up, exact McNemar "
                                   f"p={paired['p_value']:.2g}", width,
                                   subsequent_indent="  ")
    return lines + textwrap.wrap(TERMINAL_LEGEND, width)


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _md_local(rows: Sequence[Row], dataset: str) -> list[str]:
    base_name, plus_name = DATASET_TITLE.get(dataset, (dataset, dataset + "+"))
    body = [[r.profile, r.name, quant_label(r), fmt_pct(r.base_pass_at_1),
             fmt_pct(r.plus_pass_at_1), fmt_interval(r.plus_ci), fmt_ref(r),
             fmt_pp(r.delta_pp), gate_label(r)]
            for r in rows if r.dataset == dataset]
    if not body:
        return []
    return [f"## Local {plus_name} Results (pass@1, greedy)",
            _md_table(["Profile", "Model", "Quant", base_name, plus_name,
                       f"{plus_name} 95% CI", "Reference", "vs ref", "Gate"], body)]


def determinism_lines(rows: Sequence[Row]) -> list[str]:
    """One line per row the determinism check ran on (--bench-determinism): its finding,
    the flipped verdicts, and both throughputs."""
    lines = []
    for r in sorted_rows(rows):
        d = r.determinism
        if not d:
            continue
        line = f"{r.profile} ({r.dataset}): {d['finding']}"
        if d.get("flips"):
            line += "; flips: " + flips_text(d["flips"], limit=10)
        if d.get("tokens_per_s_n") is not None:
            first = d.get("tokens_per_s")
            line += (f"; throughput {d['tokens_per_s_n']:.1f} tok/s with {d['slots']} slots, "
                     + (f"{first:.1f} as configured" if first is not None
                        else "as configured: not timed (stored answers reused)"))
        lines.append(line)
    return lines


def clock_lines(rows: Sequence[Row], limit: int = 10) -> list[str]:
    """One line per row with verdicts the clock decided (timeouts, passes near their limit
    or past the other limit policy's): machine-sensitive, a faster or slower CPU may
    change them."""
    lines = []
    for r in sorted_rows(rows):
        decided = r.clock_decided or {}
        if not decided:
            continue
        shown = "; ".join(f"{t} ({why})" for t, why in list(decided.items())[:limit])
        more = f"; and {len(decided) - limit} more" if len(decided) > limit else ""
        lines.append(f"{r.profile} ({r.dataset}, limits {r.limits or 'harness'}): "
                     f"{len(decided)} decided by the clock: {shown}{more}")
    return lines


def _md_gate(rows: Sequence[Row]) -> list[str]:
    lines = []
    for r in rows:
        changed = f" What changed: {'; '.join(r.what_changed)}." if r.what_changed else ""
        lines.append(f"- **{r['profile']}** ({r['dataset']}): "
                     f"{STATUS_LABEL.get(r['gate'], r['gate'])}. {r['gate_message']}{changed}")
    return ["## Gate", "\n".join(lines)] if lines else []


def markdown_report(rows: Sequence[Row], published: Sequence[Published],
                    date: str | None = None,
                    unscored: Sequence[Mapping[str, str]] = ()) -> str:
    """REPORT.md in the seed's format; a pure function of the rows and published scores."""
    rows = sorted_rows(rows)
    if date is None:
        stamps = [str(r.recorded) for r in rows if r.recorded]
        date = min(stamps)[:10] if stamps else datetime.date.today().isoformat()
    parts = [f"# Benchmark Results — {date}"]
    if unscored:
        parts += ["## Selected Profiles Without a Score",
                  "\n".join(f"- **{line.split(' ', 1)[0]}** {line.split(' ', 1)[1]}"
                            for line in unscored_lines(unscored))]
    for dataset in sorted({str(r.dataset) for r in rows}):
        parts += _md_local(rows, dataset)
    comp_header, comp_body = comparison_table(rows, published, bold=True)
    parts += ["## Comparison with Published Scores", _md_table(comp_header, comp_body)]
    parts += _md_gate(rows)
    if determinism := determinism_lines(rows):
        parts += ["## Determinism Check (no gate)", "\n".join(f"- {line}" for line in determinism)]
    if clock := clock_lines(rows):
        parts += ["## Verdicts Decided by the Clock (machine-sensitive)",
                  "\n".join(f"- {line}" for line in clock)]
    sessions = sorted({str(r.session) for r in rows if r.session})
    if sessions:
        parts.append(f"Run {', '.join(sessions)}. Intervals: 95% Wilson; gate: README "
                     "\"Gate\". Rebuild: `python -m plugin report`.")
    return "\n\n".join(parts) + "\n"


def profile_table(profiles: Sequence[Profile]) -> list[str]:
    header = ("profile", "ctx", "gpus", "mode", "tasks", "image", "exists", "model")
    rows = [(p.name, str(p.ctx_size), ",".join(p.gpus) or "cpu", p.prompt_mode,
             p.tasks or "all", p.image,
             "yes" if p.base_url or p.model_path.exists() else "MISSING",
             p.base_url or str(p.model_path)) for p in profiles]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
              for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header)] + [fmt.format(*r) for r in rows]
