"""Rows rendered as pytest-html cells, summary sections and per-test extras."""

from __future__ import annotations

import difflib
import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from plugin.gate.record import Row, sorted_rows
from plugin.gate.references import Published
from plugin.gate.stats import task_sort_key
from plugin.gate.verdicts import STATUS_LABEL

COLUMNS = ("Profile", "Quant", "Dataset", "base pass@1 [95% CI]", "plus pass@1 [95% CI]",
           "Reference", "Delta", "Gate", "No answer", "tok/s", "Load s", "Wall s")
DATASET_TITLE = {"humaneval": ("HumanEval", "HumanEval+"), "mbpp": ("MBPP", "MBPP+")}
FLIP_DETAIL_LIMIT = 25






def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def fmt_pp(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}pp"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def fmt_interval(ci: Sequence[float] | None) -> str:
    return "" if not ci else f"[{ci[0]:.1f}, {ci[1]:.1f}]"


def fmt_ref(row: Row) -> str:
    if row.reference is None:
        return "not published"
    from_baseline = row.reference_file is None
    return fmt_pct(row.reference) + (" (baseline)" if from_baseline else "")


def quant_label(row: Row) -> str:
    """The quant, and the prompt mode when it is not chat: "Q4_K_M, completion"."""
    mode = row.prompt_mode
    return f"{row.quant}, {mode}" if mode and mode != "chat" else str(row.quant)


def gate_label(row: Row) -> str:
    label = STATUS_LABEL.get(str(row.gate), str(row.gate))
    paired = row.paired
    if paired and (paired["b"] or paired["c"]):
        label += (f" (flips: {paired['b']} down, {paired['c']} up, "
                  f"p={paired['p_value']:.2g})")
    return label


def _score(row: Row, which: str) -> str:
    return (f"{fmt_pct(row[f'{which}_pass_at_1'])} {fmt_interval(row.get(f'{which}_ci'))} "
            f"({row[f'{which}_passed']}/{row['n_tasks']})")


def row_cells(row: Row) -> list[str]:
    wall = (row.gen_wall_s or 0.0) + (row.eval_wall_s or 0.0)
    return [row.profile, quant_label(row), row.dataset, _score(row, "base"),
            _score(row, "plus"), fmt_ref(row), fmt_pp(row.delta_pp), gate_label(row),
            str(row.no_answer), _num(row.tokens_per_s), _num(row.load_time_s),
            _num(wall)]


def table_header(cells: list[str]) -> None:
    cells[2:2] = [f'<th class="sortable" data-column-type="bench{i}">{html.escape(c)}</th>'
                  for i, c in enumerate(COLUMNS)]


def table_row(row: Row | None, cells: list[str]) -> None:
    values = row_cells(row) if row else ["-"] * len(COLUMNS)
    gate_class = f" gate-{row['gate']}" if row else ""
    cells[2:2] = [f'<td class="col-bench{i}{gate_class if i == 7 else ""}">'
                  f"{html.escape(v)}</td>" for i, v in enumerate(values)]


def verdict_class(label: str) -> str:
    """CSS class of a gate label: the colour a reviewer reads first."""
    if label.startswith("FAIL"):
        return "verdict-fail"
    if "flagged" in label:
        return "verdict-flagged"
    if label.startswith("pass"):
        return "verdict-pass"
    return "verdict-other"


def _cell(header: str, value: str) -> str:
    css = f' class="{verdict_class(value)}"' if header == "Gate" else ""
    return f"<td{css}>{html.escape(value)}</td>"


def _html_table(header: Sequence[str], rows: Iterable[Sequence[str]],
                css: str = "bench-summary") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(h, c) for h, c in zip(header, r, strict=True))
                   + "</tr>" for r in rows)
    return (f'<table class="{css}" border="1" cellpadding="4">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


STYLE = """<style>
.bench-summary { border-collapse: collapse; margin: 6px 0 14px; font-size: 13px; }
.bench-summary th { background: #e4e4e4; color: #111; }
.bench-summary td { color: #111; }
.bench-summary td.verdict-fail { background: #fdd; color: #a00; font-weight: bold; }
.bench-summary td.verdict-flagged { background: #ffe8c4; color: #8a4b00; font-weight: bold; }
.bench-summary td.verdict-pass { background: #dfd; color: #060; font-weight: bold; }
.bench-published summary { cursor: pointer; color: #333; }
.bench-plots figure { display: inline-block; margin: 6px; vertical-align: top; }
.bench-plots svg { max-width: 760px; height: auto; }
.bench-extra { max-width: 1200px; }
.bench-extra pre { background: #f6f6f6; padding: 6px; max-height: 320px; overflow: auto;
  white-space: pre-wrap; word-break: break-all; }
.bench-flips td { vertical-align: top; }
.bench-flips pre { max-height: 120px; margin: 0; }
td.gate-fail_tolerance, td.gate-fail_drop { color: #b00; font-weight: bold; }
td.gate-flagged_rise { color: #b60; font-weight: bold; }
</style>"""


def plots_html(rows: Sequence[Row],
               trend: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    from plugin.report import plots

    figures = [("bench-plot-pass", "pass@1 per profile", plots.pass_at_1_svg(rows)),
               ("bench-plot-trend", "history trend", plots.trend_svg(trend)),
               ("bench-plot-throughput", "throughput", plots.throughput_svg(rows))]
    return '<div class="bench-plots">' + "".join(
        f'<figure id="{fid}">{svg}<figcaption>{html.escape(cap)}</figcaption></figure>'
        for fid, cap, svg in figures) + "</div>"


def _unscored_html(unscored: Sequence[Mapping[str, str]]) -> list[str]:
    if not unscored:
        return []
    body = [[u["profile"], u["dataset"], u["outcome"], u["reason"]]
            for u in sorted(unscored, key=lambda u: (u["profile"], u["dataset"]))]
    return ['<h2 id="bench-unscored">Selected profiles without a score</h2>',
            _html_table(["Profile", "Dataset", "Outcome", "Reason"], body)]


def summary_sections(rows: Sequence[Row], published: Sequence[Published],
                     trend: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                     unscored: Sequence[Mapping[str, str]] = ()) -> list[str]:
    """The report's summary: profiles without a score, the seed's two tables, the gate,
    the plots."""
    rows = sorted_rows(rows)
    local_header, local_body = _local_table(rows)
    comp_header, comp_body = comparison_table(rows, published)
    gate_header, gate_body = _gate_table(rows)
    sections = [
        STYLE,
        *_unscored_html(unscored),
        '<h2 id="bench-gate">Gate</h2>',
        _html_table(gate_header, gate_body),
        "<p>Gate (README \"Gate\"): fails when plus pass@1 &lt; reference - tolerance, or "
        "when the exact McNemar test on the tasks that flipped against the pinned baseline "
        "shows a significant drop; a rise beyond the tolerance passes with a flag. "
        "Intervals: 95% Wilson. What changed: the fingerprint inputs that differ from the "
        "baseline run's.</p>",
        '<h2 id="bench-local">Local results (pass@1, greedy)</h2>',
        _html_table(local_header, local_body),
    ]
    if any(r.determinism for r in rows):
        sections += ['<h2 id="bench-determinism">Determinism check (no gate)</h2>',
                     _html_table(*_determinism_table(rows))]
    if any(r.clock_decided for r in rows):
        sections += ['<h2 id="bench-clock">Verdicts decided by the clock (machine-sensitive)'
                     '</h2>', _html_table(*_clock_table(rows)),
                     "<p>Timeouts, and passes that used more than half of their time limit "
                     "or more than the other limit policy allows (--bench-limits): a faster "
                     "or slower CPU may change them (docs/EVALUATION.md).</p>"]
    sections += _published_html(comp_header, comp_body)
    if trend is not None:
        sections += ['<h2 id="bench-plots">Plots</h2>', plots_html(rows, trend)]
    return sections


def flips_text(flips: Sequence[Mapping[str, Any]], limit: int = 20) -> str:
    """The determinism check's flipped verdicts: "HumanEval/2 pass->fail, ..."."""
    return ", ".join(f"{f['task']} {f['first']}->{f['slots']}" for f in flips[:limit])


def _published_html(header: list[str], body: list[list[str]]) -> list[str]:
    """Rows with a number first; models without any published score collapsed."""
    known = [r for r in body if any(c != "not published" for c in r[1:-1])]
    unknown = [r for r in body if r not in known]
    parts = ['<h2 id="bench-comparison">Comparison with published scores</h2>',
             _html_table(header, known)]
    if unknown:
        parts.append(f'<details class="bench-published"><summary>{len(unknown)} models '
                     "without a published score</summary>"
                     f"{_html_table(header, unknown)}</details>")
    return parts


def _determinism_table(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["Profile", "Dataset", "Finding", "Answers that differ", "Verdicts that flip",
              "tok/s as configured", "tok/s with N slots"]
    body = []
    for r in rows:
        d = r.determinism
        if not d:
            continue
        body.append([r.profile, r.dataset, str(d["finding"]),
                     ", ".join(d.get("differ", [])[:20]) or "none",
                     flips_text(d.get("flips", [])) or "none",
                     _num(d.get("tokens_per_s")), _num(d.get("tokens_per_s_n"))])
    return header, body


def _clock_table(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["Profile", "Dataset", "Limits", "Task", "Why"]
    body = [[r.profile, r.dataset, r.limits or "harness", task, why]
            for r in rows for task, why in (r.clock_decided or {}).items()]
    return header, body


def _local_table(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["Model", "Profile", "Quant", "Dataset", "base", "plus", "plus 95% CI",
              "Reference", "Delta", "Gate", "No answer", "Truncated", "Clock-decided", "tok/s",
              "Build"]
    body = [[r.name, r.profile, quant_label(r), r.dataset, fmt_pct(r.base_pass_at_1),
             fmt_pct(r.plus_pass_at_1), fmt_interval(r.plus_ci), fmt_ref(r),
             fmt_pp(r.delta_pp), gate_label(r), str(r.no_answer), str(r.truncated),
             str(len(r.clock_decided or {})), _num(r.tokens_per_s), str(r.build_info)]
            for r in rows]
    return header, body


def comparison_table(rows: Sequence[Row], published: Sequence[Published],
                      bold: bool = False) -> tuple[list[str], list[list[str]]]:
    header = ["Model", "HumanEval", "HumanEval+", "Source"]
    body = []
    for pub in published:
        he, hep = pub.scores.get("humaneval"), pub.scores.get("humaneval_plus")
        body.append([pub.model, fmt_pct(he) if he is not None else "not published",
                     fmt_pct(hep) if hep is not None else "not published", pub.source])
    for r in rows:
        if r.dataset == "humaneval" and not r.partial:
            cells = [f"Local: {r.name} ({quant_label(r)})", fmt_pct(r.base_pass_at_1),
                     fmt_pct(r.plus_pass_at_1), "Local benchmark"]
            body.append([f"**{c}**" for c in cells] if bold else cells)
    return header, body


def _gate_table(rows: Sequence[Row]) -> tuple[list[str], list[list[str]]]:
    header = ["Profile", "Dataset", "Gate", "plus pass@1 [95% CI]", "Delta",
              "Reference (provenance)", "pass->fail", "fail->pass", "McNemar p",
              "What changed", "Baseline run"]
    body = []
    for r in rows:
        p = r.paired
        body.append([r.profile, r.dataset, STATUS_LABEL.get(r.gate, r.gate),
                     f"{fmt_pct(r.plus_pass_at_1)} {fmt_interval(r.plus_ci)} "
                     f"({r.plus_passed}/{r.n_tasks})", fmt_pp(r.delta_pp),
                     f"{fmt_ref(r)} - {r['tolerance_pp']:.1f} pp ({r['provenance']})"
                     if r.reference is not None else f"not published ({r['provenance']})",
                     _flips(p, "regressed"), _flips(p, "fixed"),
                     f"{p['p_value']:.3g} (n={p['n_common']})" if p else "-",
                     changed_text(r), r.baseline_run or "none pinned"])
    return header, body


def changed_text(row: Row) -> str:
    """The fingerprint inputs that differ from the baseline run's, in one line."""
    if row.what_changed is None:
        return "-" if not row.baseline_run else "not known (inputs not stored)"
    return "; ".join(row.what_changed) or "nothing (same fingerprint inputs)"


def _flips(paired: Mapping[str, Any] | None, key: str, limit: int = 12) -> str:
    if not paired:
        return "-"
    tasks = list(paired[key])
    more = f" (+{len(tasks) - limit})" if len(tasks) > limit else ""
    return f"{len(tasks)}: " + ", ".join(tasks[:limit]) + more if tasks else "0"


def test_extras_html(row: Row, flipped: Sequence[Mapping[str, Any]],
                     log_tail: str) -> list[str]:
    """HTML fragments for one test: the gate's verdict, flipped tasks, server log tail."""
    parts = [f'<div class="bench-extra bench-gate-detail"><h4>Gate: '
             f"{html.escape(gate_label(row))}</h4><p>{html.escape(row['gate_message'])}</p>"
             f"<p>run {html.escape(str(row.get('run_id')))}, fingerprint "
             f"{html.escape(str(row['fingerprint']))}</p></div>"]
    if flipped:
        parts.append(_flips_html(flipped, row.clock_decided or {}))
    if log_tail:
        parts.append(f'<div class="bench-extra bench-log"><h4>llama-server log (tail)</h4>'
                     f"<pre>{html.escape(log_tail)}</pre></div>")
    return parts


def _finish(reason: Any, tokens: Any) -> str:
    return f"{reason or '?'}, {tokens if tokens is not None else '?'} tokens"


def program_diff(before: str | None, after: str | None) -> str:
    """A unified diff of the baseline program against the current one."""
    if before is None:
        return "(the baseline's program was not stored)\n" + (after or "")
    if before == after:
        return "(the same program: the verdict changed, not the code)\n" + (after or "")
    def lines(text: str) -> list[str]:
        return (text if text.endswith("\n") else text + "\n").splitlines(keepends=True)

    return "".join(difflib.unified_diff(lines(before), lines(after or ""), "baseline",
                                        "now")) or (after or "")


def _flip_row(f: Mapping[str, Any], clock: Mapping[str, str]) -> str:
    finish = (f"{_finish(f.get('baseline_finish_reason'), f.get('baseline_completion_tokens'))}"
              f" -> {_finish(f.get('finish_reason'), f.get('completion_tokens'))}")
    diff = program_diff(f.get("baseline_program"), f.get("program") or f.get("solution"))
    cells = [f["task_id"], f["flip"], finish]
    return ("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
            + f"<td><pre>{html.escape(f.get('fail_input') or '-')}</pre></td>"
            + f"<td>{html.escape(clock.get(f['task_id'], 'no'))}</td>"
            + f"<td><pre>{html.escape(diff)}</pre></td></tr>")


def _flips_html(flipped: Sequence[Mapping[str, Any]], clock: Mapping[str, str]) -> str:
    ordered = sorted(flipped, key=lambda f: (f["flip"] != "pass->fail",
                                             task_sort_key(f["task_id"])))
    rows = "".join(_flip_row(f, clock) for f in ordered[:FLIP_DETAIL_LIMIT])
    more = (f"<p>... and {len(ordered) - FLIP_DETAIL_LIMIT} more (history database, "
            f"table tasks)</p>" if len(ordered) > FLIP_DETAIL_LIMIT else "")
    return (f'<div class="bench-extra bench-flips"><h4>Tasks that flipped against the '
            f"baseline ({len(ordered)})</h4><table class=\"bench-summary\" border=\"1\">"
            "<thead><tr><th>task</th><th>flip</th><th>finish, tokens: baseline -&gt; now</th>"
            "<th>first failing input</th><th>decided by the clock</th><th>program: diff of "
            f"the baseline's against the current</th></tr></thead><tbody>{rows}</tbody>"
            f"</table>{more}</div>")


def summary_page(rows: Sequence[Row], published: Sequence[Published],
                 trend: Mapping[str, Sequence[Mapping[str, Any]]], title: str,
                 unscored: Sequence[Mapping[str, str]] = ()) -> str:
    body = "\n".join(summary_sections(rows, published, trend, unscored))
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")
