"""Rendering: report rows, pytest-html cells and summary, REPORT.md, terminal lines.

A *row* is a plain JSON-able dict made from a BenchResult and its Reference; rows travel
through ``report.user_properties`` (so they survive pytest-xdist) and every output is
rendered from them.
"""

from __future__ import annotations

import datetime
import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from plugin.config import Profile
from plugin.references import Reference, References, gate

COLUMNS = ("Profile", "Quant", "Dataset", "base pass@1", "plus pass@1", "Reference",
           "Delta", "Gate", "No answer", "tok/s", "Load s", "Wall s")


def result_row(result: Any, reference: Reference) -> dict[str, Any]:
    outcome = gate(result.plus_pass_at_1, reference, partial=result.partial)
    return {
        "profile": result.profile, "name": result.display_name, "quant": result.quant,
        "dataset": result.dataset, "n_tasks": result.n_tasks, "partial": result.partial,
        "base_passed": result.base_passed, "plus_passed": result.plus_passed,
        "base_pass_at_1": result.base_pass_at_1, "plus_pass_at_1": result.plus_pass_at_1,
        "reference": reference.plus_pass_at_1, "tolerance_pp": reference.tolerance_pp,
        "provenance": reference.provenance, "reference_model": reference.reference_model,
        "delta_pp": outcome.delta_pp, "gate": outcome.status, "gate_message": outcome.message,
        "no_answer": len(result.no_answer), "thinking_exhausted": len(result.thinking_exhausted),
        "truncated": len(result.truncated), "unjudged": len(result.unjudged),
        "tokens_per_s": result.generation.get("gen_tokens_per_s"),
        "requests_sent": result.requests_sent,
        "load_time_s": result.load_time_s, "gen_wall_s": result.gen_wall_s,
        "eval_wall_s": result.eval_wall_s, "build_info": result.build_info,
        "fingerprint": result.fingerprint,
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _pp(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}pp"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _ref(row: Mapping[str, Any]) -> str:
    return _pct(row["reference"]) if row["reference"] is not None else "not published"


def _cells(row: Mapping[str, Any]) -> list[str]:
    return [row["profile"], row["quant"], row["dataset"],
            f"{_pct(row['base_pass_at_1'])} ({row['base_passed']}/{row['n_tasks']})",
            f"{_pct(row['plus_pass_at_1'])} ({row['plus_passed']}/{row['n_tasks']})",
            _ref(row), _pp(row["delta_pp"]), row["gate"], str(row["no_answer"]),
            _num(row["tokens_per_s"]), _num(row["load_time_s"]),
            _num(row["gen_wall_s"] + row["eval_wall_s"])]


# ------------------------------------------------------------------ pytest-html


def table_header(cells: list[str]) -> None:
    cells[2:2] = [f'<th class="sortable" data-column-type="bench{i}">{html.escape(c)}</th>'
                  for i, c in enumerate(COLUMNS)]


def table_row(row: Mapping[str, Any] | None, cells: list[str]) -> None:
    values = _cells(row) if row else ["-"] * len(COLUMNS)
    cells[2:2] = [f'<td class="col-bench{i}">{html.escape(v)}</td>'
                  for i, v in enumerate(values)]


def _html_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return (f'<table class="bench-summary" border="1" cellpadding="4">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def summary_sections(rows: Sequence[Mapping[str, Any]], refs: References) -> list[str]:
    local_header, local_rows = _local_table(rows)
    comp_header, comp_rows = _comparison_table(rows, refs)
    return [
        "<h2>Local results (pass@1, greedy)</h2>",
        _html_table(local_header, local_rows),
        "<h2>Comparison with published scores</h2>",
        _html_table(comp_header, comp_rows),
        "<p>Reference = the profile's entry in reference-scores.json; gate fails when plus "
        "pass@1 &lt; reference - tolerance. 'not published' = no published score found.</p>",
    ]


def _local_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["Model", "Profile", "Quant", "Dataset", "base", "plus", "Reference", "Delta",
              "Gate", "No answer", "Truncated", "tok/s", "Build"]
    body = [[r["name"], r["profile"], r["quant"], r["dataset"], _pct(r["base_pass_at_1"]),
             _pct(r["plus_pass_at_1"]), _ref(r), _pp(r["delta_pp"]), r["gate"],
             str(r["no_answer"]), str(r["truncated"]), _num(r["tokens_per_s"]),
             str(r["build_info"])] for r in rows]
    return header, body


def _comparison_table(rows: Sequence[Mapping[str, Any]],
                      refs: References) -> tuple[list[str], list[list[str]]]:
    header = ["Model", "HumanEval", "HumanEval+", "Source"]
    body = []
    for pub in refs.published:
        he, hep = pub.scores.get("humaneval"), pub.scores.get("humaneval_plus")
        body.append([pub.model, _pct(he) if he is not None else "not published",
                     _pct(hep) if hep is not None else "not published", pub.source])
    for r in rows:
        if r["dataset"] == "humaneval":
            body.append([f"Local: {r['name']}", _pct(r["base_pass_at_1"]),
                         _pct(r["plus_pass_at_1"]), "local benchmark"])
    return header, body


# ------------------------------------------------------------------ text outputs


def terminal_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    widths = [max(len(COLUMNS[i]), *(len(_cells(r)[i]) for r in rows))
              for i in range(len(COLUMNS))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*COLUMNS)] + [fmt.format(*_cells(r)) for r in rows]


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def markdown_report(rows: Sequence[Mapping[str, Any]], refs: References,
                    date: str | None = None) -> str:
    date = date or datetime.date.today().isoformat()
    local_rows = [[r["name"], r["quant"], r["dataset"], _pct(r["base_pass_at_1"]),
                   _pct(r["plus_pass_at_1"]), _ref(r), _pp(r["delta_pp"]), r["gate"]]
                  for r in rows]
    comp_header, comp_rows = _comparison_table(rows, refs)
    return "\n\n".join([
        f"# Benchmark Results — {date}",
        "## Local Results (pass@1, greedy)",
        _md_table(["Model", "Quant", "Dataset", "base", "plus", "Reference", "Delta", "Gate"],
                  local_rows),
        "## Comparison with Published Scores",
        _md_table(comp_header, comp_rows),
    ]) + "\n"


def profile_table(profiles: Sequence[Profile]) -> list[str]:
    header = ("profile", "ctx", "gpus", "image", "exists", "model")
    rows = [(p.name, str(p.ctx_size), ",".join(p.gpus) or "cpu", p.image,
             "yes" if p.base_url or p.model_path.exists() else "MISSING",
             p.base_url or str(p.model_path)) for p in profiles]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
              for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header)] + [fmt.format(*r) for r in rows]
