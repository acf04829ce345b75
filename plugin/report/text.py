"""Rows rendered as text: the terminal table, REPORT.md, the profile list."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence

from plugin.config.profile import Profile
from plugin.gate.record import Row, sorted_rows
from plugin.gate.references import Published
from plugin.gate.verdicts import STATUS_LABEL
from plugin.report.html import (
    COLUMNS,
    DATASET_TITLE,
    comparison_table,
    flips_text,
    fmt_interval,
    fmt_pct,
    fmt_pp,
    fmt_ref,
    gate_label,
    quant_label,
    row_cells,
)


def unscored_lines(unscored: Sequence[Mapping[str, str]]) -> list[str]:
    """One line per selected profile x dataset that produced no score, with its reason."""
    return [f"{u['profile']} ({u['dataset']}): {u['outcome']}: {u['reason']}"
            for u in sorted(unscored, key=lambda u: (u["profile"], u["dataset"]))]


def terminal_lines(rows: Sequence[Row]) -> list[str]:
    rows = sorted_rows(rows)
    widths = [max(len(COLUMNS[i]), *(len(row_cells(r)[i]) for r in rows))
              for i in range(len(COLUMNS))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*COLUMNS)] + [fmt.format(*row_cells(r)) for r in rows]


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _md_local(rows: Sequence[Row], dataset: str) -> list[str]:
    base_name, plus_name = DATASET_TITLE.get(dataset, (dataset, dataset + "+"))
    body = [[r.name, quant_label(r), fmt_pct(r.base_pass_at_1), fmt_pct(r.plus_pass_at_1),
             fmt_interval(r.plus_ci), fmt_ref(r), fmt_pp(r.delta_pp), gate_label(r)]
            for r in rows if r.dataset == dataset]
    if not body:
        return []
    return [f"## Local {plus_name} Results (pass@1, greedy)",
            _md_table(["Model", "Quant", base_name, plus_name, f"{plus_name} 95% CI",
                       "Reference", "vs ref", "Gate"], body)]


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


def _md_gate(rows: Sequence[Row]) -> list[str]:
    lines = []
    for r in rows:
        lines.append(f"- **{r['profile']}** ({r['dataset']}): "
                     f"{STATUS_LABEL.get(r['gate'], r['gate'])}. {r['gate_message']}")
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
