"""Report rows and every output made from them: pytest-html cells, summary and per-test
extras, REPORT.md, summary.json, summary.html, the terminal table; and ``assess``, which
judges a result with the full gate and stores it in the history.

A *row* is a plain JSON-able dict made from a BenchResult, its Reference and the gate's
outcome; rows travel through ``report.user_properties`` (so they survive pytest-xdist) and
are stored in the history database, so `python -m plugin report` renders the same text
from the store as the run did.
"""

from __future__ import annotations

import datetime
import html
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plugin import atomic, history
from plugin.config import Profile
from plugin.references import (
    STATUS_LABEL,
    GateOutcome,
    Published,
    Reference,
    judge,
    published_from_json,
)
from plugin.stats import task_sort_key, wilson_interval

if TYPE_CHECKING:
    from plugin.runner import BenchResult

COLUMNS = ("Profile", "Quant", "Dataset", "base pass@1 [95% CI]", "plus pass@1 [95% CI]",
           "Reference", "Delta", "Gate", "No answer", "tok/s", "Load s", "Wall s")
DATASET_TITLE = {"humaneval": ("HumanEval", "HumanEval+"), "mbpp": ("MBPP", "MBPP+")}
FLIP_DETAIL_LIMIT = 25
FAIL_INPUT_CHARS = 300
CODE_CHARS = 4000


# ------------------------------------------------------------------ rows


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


# ------------------------------------------------------------------ assess + store


def _passed(verdicts: Mapping[str, Mapping[str, str]]) -> dict[str, bool]:
    return {t: v.get("base") == "pass" and v.get("plus") == "pass" for t, v in verdicts.items()}


def _read_eval(out_dir: Path) -> Mapping[str, Any]:
    try:
        data = json.loads((out_dir / "eval" / "eval_results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {t: (entries[0] if entries else {}) for t, entries in data.get("eval", {}).items()}


def _read_completions(out_dir: Path, fingerprint: str) -> Mapping[str, Any]:
    from plugin.generate import CompletionStore

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


# ------------------------------------------------------------------ cell formatting


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def _pp(value: float | None) -> str:
    return "-" if value is None else f"{value:+.1f}pp"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _interval(ci: Sequence[float] | None) -> str:
    return "" if not ci else f"[{ci[0]:.1f}, {ci[1]:.1f}]"


def _ref(row: Mapping[str, Any]) -> str:
    if row.get("reference") is None:
        return "not published"
    from_baseline = row.get("reference_file") is None
    return _pct(row["reference"]) + (" (baseline)" if from_baseline else "")


def gate_label(row: Mapping[str, Any]) -> str:
    label = STATUS_LABEL.get(str(row["gate"]), str(row["gate"]))
    paired = row.get("paired")
    if paired and (paired["b"] or paired["c"]):
        label += (f" (flips: {paired['b']} down, {paired['c']} up, "
                  f"p={paired['p_value']:.2g})")
    return label


def _score(row: Mapping[str, Any], which: str) -> str:
    return (f"{_pct(row[f'{which}_pass_at_1'])} {_interval(row.get(f'{which}_ci'))} "
            f"({row[f'{which}_passed']}/{row['n_tasks']})")


def _cells(row: Mapping[str, Any]) -> list[str]:
    wall = (row.get("gen_wall_s") or 0.0) + (row.get("eval_wall_s") or 0.0)
    return [row["profile"], row["quant"], row["dataset"], _score(row, "base"),
            _score(row, "plus"), _ref(row), _pp(row["delta_pp"]), gate_label(row),
            str(row["no_answer"]), _num(row["tokens_per_s"]), _num(row["load_time_s"]),
            _num(wall)]


# ------------------------------------------------------------------ pytest-html


def table_header(cells: list[str]) -> None:
    cells[2:2] = [f'<th class="sortable" data-column-type="bench{i}">{html.escape(c)}</th>'
                  for i, c in enumerate(COLUMNS)]


def table_row(row: Mapping[str, Any] | None, cells: list[str]) -> None:
    values = _cells(row) if row else ["-"] * len(COLUMNS)
    gate_class = f" gate-{row['gate']}" if row else ""
    cells[2:2] = [f'<td class="col-bench{i}{gate_class if i == 7 else ""}">'
                  f"{html.escape(v)}</td>" for i, v in enumerate(values)]


def _html_table(header: Sequence[str], rows: Iterable[Sequence[str]],
                css: str = "bench-summary") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r in rows)
    return (f'<table class="{css}" border="1" cellpadding="4">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


STYLE = """<style>
.bench-summary { border-collapse: collapse; margin: 6px 0 14px; font-size: 13px; }
.bench-summary th { background: #eee; }
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


def plots_html(rows: Sequence[Mapping[str, Any]],
               trend: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    from plugin import plots

    figures = [("bench-plot-pass", "pass@1 per profile", plots.pass_at_1_svg(rows)),
               ("bench-plot-trend", "history trend", plots.trend_svg(trend)),
               ("bench-plot-throughput", "throughput", plots.throughput_svg(rows))]
    return '<div class="bench-plots">' + "".join(
        f'<figure id="{fid}">{svg}<figcaption>{html.escape(cap)}</figcaption></figure>'
        for fid, cap, svg in figures) + "</div>"


def unscored_lines(unscored: Sequence[Mapping[str, str]]) -> list[str]:
    """One line per selected profile x dataset that produced no score, with its reason."""
    return [f"{u['profile']} ({u['dataset']}): {u['outcome']}: {u['reason']}"
            for u in sorted(unscored, key=lambda u: (u["profile"], u["dataset"]))]


def _unscored_html(unscored: Sequence[Mapping[str, str]]) -> list[str]:
    if not unscored:
        return []
    body = [[u["profile"], u["dataset"], u["outcome"], u["reason"]]
            for u in sorted(unscored, key=lambda u: (u["profile"], u["dataset"]))]
    return ['<h2 id="bench-unscored">Selected profiles without a score</h2>',
            _html_table(["Profile", "Dataset", "Outcome", "Reason"], body)]


def summary_sections(rows: Sequence[Mapping[str, Any]], published: Sequence[Published],
                     trend: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                     unscored: Sequence[Mapping[str, str]] = ()) -> list[str]:
    """The report's summary: profiles without a score, the seed's two tables, the gate,
    the plots."""
    rows = sorted_rows(rows)
    local_header, local_body = _local_table(rows)
    comp_header, comp_body = _comparison_table(rows, published)
    gate_header, gate_body = _gate_table(rows)
    sections = [
        STYLE,
        *_unscored_html(unscored),
        '<h2 id="bench-local">Local results (pass@1, greedy)</h2>',
        _html_table(local_header, local_body),
        '<h2 id="bench-comparison">Comparison with published scores</h2>',
        _html_table(comp_header, comp_body),
        '<h2 id="bench-gate">Gate</h2>',
        _html_table(gate_header, gate_body),
        "<p>Gate (README \"Gate\"): fails when plus pass@1 &lt; reference - tolerance, or "
        "when the exact McNemar test on the tasks that flipped against the pinned baseline "
        "shows a significant drop; a rise beyond the tolerance passes with a flag. "
        "Intervals: 95% Wilson. 'not published' = no published score found.</p>",
    ]
    if trend is not None:
        sections += ['<h2 id="bench-plots">Plots</h2>', plots_html(rows, trend)]
    return sections


def _local_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["Model", "Profile", "Quant", "Dataset", "base", "plus", "plus 95% CI",
              "Reference", "Delta", "Gate", "No answer", "Truncated", "tok/s", "Build"]
    body = [[r["name"], r["profile"], r["quant"], r["dataset"], _pct(r["base_pass_at_1"]),
             _pct(r["plus_pass_at_1"]), _interval(r.get("plus_ci")), _ref(r),
             _pp(r["delta_pp"]), gate_label(r), str(r["no_answer"]), str(r["truncated"]),
             _num(r["tokens_per_s"]), str(r["build_info"])] for r in rows]
    return header, body


def _comparison_table(rows: Sequence[Mapping[str, Any]], published: Sequence[Published],
                      bold: bool = False) -> tuple[list[str], list[list[str]]]:
    header = ["Model", "HumanEval", "HumanEval+", "Source"]
    body = []
    for pub in published:
        he, hep = pub.scores.get("humaneval"), pub.scores.get("humaneval_plus")
        body.append([pub.model, _pct(he) if he is not None else "not published",
                     _pct(hep) if hep is not None else "not published", pub.source])
    for r in rows:
        if r["dataset"] == "humaneval" and not r["partial"]:
            cells = [f"Local: {r['name']} ({r['quant']})", _pct(r["base_pass_at_1"]),
                     _pct(r["plus_pass_at_1"]), "Local benchmark"]
            body.append([f"**{c}**" for c in cells] if bold else cells)
    return header, body


def _gate_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    header = ["Profile", "Dataset", "Gate", "Reference (provenance)", "Baseline run",
              "pass->fail", "fail->pass", "McNemar p"]
    body = []
    for r in rows:
        p = r.get("paired")
        body.append([r["profile"], r["dataset"], STATUS_LABEL.get(r["gate"], r["gate"]),
                     f"{_ref(r)} +/- {r['tolerance_pp']:.1f} pp ({r['provenance']})"
                     if r.get("reference") is not None else f"not published ({r['provenance']})",
                     r.get("baseline_run") or "none pinned",
                     _flips(p, "regressed"), _flips(p, "fixed"),
                     f"{p['p_value']:.3g} (n={p['n_common']})" if p else "-"])
    return header, body


def _flips(paired: Mapping[str, Any] | None, key: str, limit: int = 12) -> str:
    if not paired:
        return "-"
    tasks = list(paired[key])
    more = f" (+{len(tasks) - limit})" if len(tasks) > limit else ""
    return f"{len(tasks)}: " + ", ".join(tasks[:limit]) + more if tasks else "0"


# ------------------------------------------------------------------ per-test extras


def test_extras_html(row: Mapping[str, Any], flipped: Sequence[Mapping[str, Any]],
                     log_tail: str) -> list[str]:
    """HTML fragments for one test: the gate's verdict, flipped tasks, server log tail."""
    parts = [f'<div class="bench-extra bench-gate-detail"><h4>Gate: '
             f"{html.escape(gate_label(row))}</h4><p>{html.escape(row['gate_message'])}</p>"
             f"<p>run {html.escape(str(row.get('run_id')))}, fingerprint "
             f"{html.escape(str(row['fingerprint']))}</p></div>"]
    if flipped:
        parts.append(_flips_html(flipped))
    if log_tail:
        parts.append(f'<div class="bench-extra bench-log"><h4>llama-server log (tail)</h4>'
                     f"<pre>{html.escape(log_tail)}</pre></div>")
    return parts


def _flips_html(flipped: Sequence[Mapping[str, Any]]) -> str:
    ordered = sorted(flipped, key=lambda f: (f["flip"] != "pass->fail",
                                             task_sort_key(f["task_id"])))
    rows = "".join(
        f"<tr><td>{html.escape(f['task_id'])}</td><td>{html.escape(f['flip'])}</td>"
        f"<td><pre>{html.escape(f.get('solution') or '')}</pre></td>"
        f"<td><pre>{html.escape(f.get('fail_input') or '-')}</pre></td></tr>"
        for f in ordered[:FLIP_DETAIL_LIMIT])
    more = (f"<p>... and {len(ordered) - FLIP_DETAIL_LIMIT} more (history database, "
            f"table tasks)</p>" if len(ordered) > FLIP_DETAIL_LIMIT else "")
    return (f'<div class="bench-extra bench-flips"><h4>Tasks that flipped against the '
            f"baseline ({len(ordered)})</h4><table class=\"bench-summary\" border=\"1\">"
            "<thead><tr><th>task</th><th>flip</th><th>code now</th><th>first failing input"
            f"</th></tr></thead><tbody>{rows}</tbody></table>{more}</div>")


# ------------------------------------------------------------------ text outputs


def terminal_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = sorted_rows(rows)
    widths = [max(len(COLUMNS[i]), *(len(_cells(r)[i]) for r in rows))
              for i in range(len(COLUMNS))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*COLUMNS)] + [fmt.format(*_cells(r)) for r in rows]


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _md_local(rows: Sequence[Mapping[str, Any]], dataset: str) -> list[str]:
    base_name, plus_name = DATASET_TITLE.get(dataset, (dataset, dataset + "+"))
    body = [[r["name"], r["quant"], _pct(r["base_pass_at_1"]), _pct(r["plus_pass_at_1"]),
             _interval(r.get("plus_ci")), _ref(r), _pp(r["delta_pp"]), gate_label(r)]
            for r in rows if r["dataset"] == dataset]
    if not body:
        return []
    return [f"## Local {plus_name} Results (pass@1, greedy)",
            _md_table(["Model", "Quant", base_name, plus_name, f"{plus_name} 95% CI",
                       "Reference", "vs ref", "Gate"], body)]


def _md_gate(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = []
    for r in rows:
        lines.append(f"- **{r['profile']}** ({r['dataset']}): "
                     f"{STATUS_LABEL.get(r['gate'], r['gate'])}. {r['gate_message']}")
    return ["## Gate", "\n".join(lines)] if lines else []


def markdown_report(rows: Sequence[Mapping[str, Any]], published: Sequence[Published],
                    date: str | None = None,
                    unscored: Sequence[Mapping[str, str]] = ()) -> str:
    """REPORT.md in the seed's format; a pure function of the rows and published scores."""
    rows = sorted_rows(rows)
    if date is None:
        stamps = [str(r["recorded"]) for r in rows if r.get("recorded")]
        date = min(stamps)[:10] if stamps else datetime.date.today().isoformat()
    parts = [f"# Benchmark Results — {date}"]
    if unscored:
        parts += ["## Selected Profiles Without a Score",
                  "\n".join(f"- **{line.split(' ', 1)[0]}** {line.split(' ', 1)[1]}"
                            for line in unscored_lines(unscored))]
    for dataset in sorted({str(r["dataset"]) for r in rows}):
        parts += _md_local(rows, dataset)
    comp_header, comp_body = _comparison_table(rows, published, bold=True)
    parts += ["## Comparison with Published Scores", _md_table(comp_header, comp_body)]
    parts += _md_gate(rows)
    sessions = sorted({str(r.get("session")) for r in rows if r.get("session")})
    if sessions:
        parts.append(f"Run {', '.join(sessions)}. Intervals: 95% Wilson; gate: README "
                     "\"Gate\". Rebuild: `python -m plugin report`.")
    return "\n\n".join(parts) + "\n"


def summary_json(session: str, rows: Sequence[Mapping[str, Any]],
                 unscored: Sequence[Mapping[str, str]] = ()) -> str:
    return json.dumps({"run_id": session, "results": sorted_rows(rows),
                       "unscored": sorted(unscored, key=lambda u: (u["profile"], u["dataset"]))},
                      indent=1, sort_keys=True) + "\n"


def trend_for_plot(trend: Mapping[tuple[str, str], Sequence[history.TrendPoint]],
                   ) -> dict[str, list[dict[str, Any]]]:
    return {f"{p} ({d})": [{"plus_pass_at_1": t.plus_pass_at_1, "plus_passed": t.plus_passed,
                            "n_tasks": t.n_tasks, "pinned": t.pinned} for t in points]
            for (p, d), points in trend.items()}


def summary_page(rows: Sequence[Mapping[str, Any]], published: Sequence[Published],
                 trend: Mapping[str, Sequence[Mapping[str, Any]]], title: str,
                 unscored: Sequence[Mapping[str, str]] = ()) -> str:
    body = "\n".join(summary_sections(rows, published, trend, unscored))
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


@dataclass(frozen=True)
class Outputs:
    markdown: str
    summary: str
    page: str


def render_outputs(session: str, rows: Sequence[Mapping[str, Any]],
                   published: Sequence[Published],
                   trend: Mapping[str, Sequence[Mapping[str, Any]]] | None,
                   unscored: Sequence[Mapping[str, str]] = ()) -> Outputs:
    return Outputs(markdown=markdown_report(rows, published, unscored=unscored),
                   summary=summary_json(session, rows, unscored),
                   page=summary_page(rows, published, trend or {},
                                     f"llama.cpp benchmark summary: run {session}",
                                     unscored))


def write_outputs(out_dir: Path, outputs: Outputs) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("REPORT.md", outputs.markdown), ("summary.json", outputs.summary),
                       ("summary.html", outputs.page)):
        path = out_dir / name
        atomic.write_text(path, text)
        written.append(path)
    return written


def rebuild(db_path: Path, out_dir: Path, session: str | None = None) -> list[Path]:
    """REPORT.md, summary.json and summary.html of a stored session (default: the latest)."""
    with history.opened(db_path) as conn:
        session = session or history.latest_session(conn)
        if session is None:
            raise LookupError(f"{db_path}: no runs stored yet")
        rows = history.session_rows(conn, session)
        if not rows:
            raise LookupError(f"{db_path}: no runs of session {session!r}")
        published = published_from_json(history.session_published(conn, session))
        trend = trend_for_plot(history.trend(conn, up_to=history.session_end(conn, session)))
    return write_outputs(out_dir, render_outputs(session, rows, published, trend))


def profile_table(profiles: Sequence[Profile]) -> list[str]:
    header = ("profile", "ctx", "gpus", "image", "exists", "model")
    rows = [(p.name, str(p.ctx_size), ",".join(p.gpus) or "cpu", p.image,
             "yes" if p.base_url or p.model_path.exists() else "MISSING",
             p.base_url or str(p.model_path)) for p in profiles]
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) if rows else len(header[i])
              for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header)] + [fmt.format(*r) for r in rows]
