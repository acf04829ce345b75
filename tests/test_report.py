"""Report rows, the assess -> history -> rebuild round trip, renderings and the CLI."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from plugin.gate import history, programs
from plugin.gate.assess import assess
from plugin.gate.history import Session
from plugin.gate.references import Reference, load_references
from plugin.report import html as report_html
from plugin.report.html import COLUMNS, summary_sections, table_header, table_row
from plugin.report.outputs import rebuild, render_outputs
from plugin.report.text import markdown_report
from plugin.runner import BenchResult, TaskFacts

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = load_references(ROOT / "reference-scores.json").published


def _result(tmp_path: Path, passing: set[int], n: int = 20, profile: str = "bench-x",
            fingerprint: str = "fp-a", variant: str = "") -> BenchResult:
    """A BenchResult with its per-task facts, as the runner returns it."""
    out = tmp_path / profile / "humaneval"
    verdicts = {f"HumanEval/{i}": {"base": "pass" if i in passing else "fail",
                                   "plus": "pass" if i in passing else "fail"}
                for i in range(n)}
    tasks = {t: TaskFacts(t, v["base"], v["plus"], answer="```python\n...```",
                          solution=f"def f{t[-1]}():\n    return {t[-1]}{variant}",
                          finish_reason="length" if variant else "stop",
                          completion_tokens=20 + len(variant), reasoning_tokens=0,
                          wall_s=0.5,
                          first_failing_input=None if v["base"] == "pass" else [1, 2])
             for t, v in verdicts.items()}
    plus = len(passing)
    return _bench_result(
        profile=profile, display_name=f"Model {profile}", quant="Q4_K_M",
        dataset="humaneval", dataset_version="v0.1.10", dataset_sha256="sha", n_tasks=n,
        partial=False, base_passed=plus, plus_passed=plus,
        base_pass_at_1=round(100 * plus / n, 2), plus_pass_at_1=round(100 * plus / n, 2),
        no_answer=[], thinking_exhausted=[], truncated=[], unjudged=[],
        generation={"gen_tokens_per_s": 123.4}, requests_sent=n, gen_wall_s=10.0,
        eval_wall_s=5.0, server_started=True, load_time_s=1.5, build_info="b1-test",
        fingerprint=fingerprint, out_dir=str(out), verdicts=verdicts, tasks=tasks)


def _bench_result(**values: Any) -> BenchResult:
    """BenchResult with the given fields; fields added later get empty values."""
    for f in dataclasses.fields(BenchResult):
        if f.name not in values and f.default is dataclasses.MISSING \
                and f.default_factory is dataclasses.MISSING:
            values[f.name] = [] if "list" in str(f.type) else None
    return BenchResult(**values)


def _ref(value: float | None, tol: float = 5.0, profile: str = "bench-x") -> Reference:
    return Reference(profile, "humaneval", value, None, tol, "published: test source")


def _session(name: str) -> Session:
    return Session(name, "hostA x86_64 2 cores", "2026-11-26T10:00:00Z",
                   published=tuple(load_references(ROOT / "reference-scores.json")
                                   .published_json()))


def _assess(db: Path, tmp_path: Path, session: str, passing: set[int], *, pin: bool = False,
            ref: float | None = None, **kw: Any) -> tuple[dict[str, Any], Any]:
    return assess(db, _session(session), _result(tmp_path, passing, **kw), _ref(ref),
                         alpha=0.05, pin=pin)


ALL_BUT_4 = set(range(20)) - {4, 9, 14, 19}  # 16/20


def test_first_run_pins_then_unchanged_passes_then_flips_fail(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    row, outcome = _assess(db, tmp_path, "s1", ALL_BUT_4, pin=True)
    assert outcome.status == "no_baseline"
    assert row["pinned"]
    assert row["reference"] is None
    row, outcome = _assess(db, tmp_path, "s2", ALL_BUT_4)
    assert outcome.status == "pass"
    assert row["baseline_run"] == "s1/hostA/bench-x/humaneval"
    assert row["paired"]["b"] == row["paired"]["c"] == 0
    assert row["reference"] == 80.0
    assert "local baseline" in row["provenance"]
    row, outcome = _assess(db, tmp_path, "s3", set(range(10)) - {4, 9}, fingerprint="fp-b")
    assert outcome.status == "fail_tolerance"  # 40 % against the baseline's 80 % - 5
    assert row["paired"]["regressed"] == [f"HumanEval/{i}" for i in (10, 11, 12, 13, 15, 16,
                                                                      17, 18)]
    with history.opened(db) as conn:
        flipped = programs.flip_details(conn, row["run_id"], row["baseline_run"])
        assert {f["task_id"] for f in flipped} == set(row["paired"]["regressed"])
        assert all(f["solution"].startswith("def f") and f["fail_input"] == "[1, 2]"
                   for f in flipped)
        assert conn.execute("SELECT COUNT(*) FROM tasks WHERE solution IS NULL").fetchone()[0] \
            == 3 * 20 - 8  # code is kept for flipped tasks only


def test_significant_drop_inside_a_wide_tolerance(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    everything = set(range(40))
    _assess(db, tmp_path, "s1", everything, pin=True, n=40)
    report_row, outcome = assess(
        db, _session("s2"), _result(tmp_path, everything - set(range(7)), n=40),
        _ref(None, tol=50.0), alpha=0.05)
    assert outcome.status == "fail_drop"
    assert report_row["paired"]["p_value"] == pytest.approx(2 / 2**7)


def test_rows_are_json_and_carry_intervals(tmp_path: Path) -> None:
    row, _ = _assess(tmp_path / "h.sqlite", tmp_path, "s1", ALL_BUT_4, ref=80.0)
    assert json.loads(json.dumps(row.to_json())) == row.to_json()
    assert row["plus_ci"] == [58.4, 91.93]  # Wilson 16/20
    assert row["gate"] == "pass"
    assert row["delta_pp"] == 0.0


def test_markdown_report_follows_the_seed_format(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    row_b, _ = _assess(db, tmp_path, "s1", ALL_BUT_4, profile="bench-b", ref=80.0)
    row_a, _ = _assess(db, tmp_path, "s1", set(range(19)), profile="bench-a")
    text = markdown_report([row_b, row_a], PUBLISHED)
    lines = text.splitlines()
    assert lines[0].startswith("# Benchmark Results — 2026-")
    assert "## Local HumanEval+ Results (pass@1, greedy)" in lines
    assert "## Comparison with Published Scores" in lines
    # rows sorted by profile whatever the arrival order
    assert text.index("Model bench-a") < text.index("Model bench-b")
    assert "| GPT-4o (2024-08) | 92.7% | 87.2% | EvalPlus leaderboard |" in lines
    assert any(line.startswith("| Claude Sonnet 4 | not published | not published")
               for line in lines)
    assert "| **Local: Model bench-b (Q4_K_M)** | **80.0%** | **80.0%** | **Local benchmark** |" \
        in lines
    assert "| bench-a | Model bench-a | Q4_K_M | 95.0% | 95.0% | [76.4, 99.1] | not " \
           "published | - | no baseline yet |" in lines
    assert text == markdown_report([row_a, row_b, row_a], PUBLISHED)  # deduplicated


def test_rebuild_reproduces_the_run_outputs(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    rows = [_assess(db, tmp_path, "s1", ALL_BUT_4, profile=p, pin=True)[0]
            for p in ("bench-b", "bench-a")]
    rows.append(_assess(db, tmp_path, "s2", set(range(8)), profile="bench-a")[0])
    run_out = render_outputs("s2", rows[2:], PUBLISHED, None)
    written = rebuild(db, tmp_path / "rebuilt")
    assert [p.name for p in written] == ["REPORT.md", "summary.json", "summary.html"]
    assert (tmp_path / "rebuilt" / "REPORT.md").read_text() == run_out.markdown
    assert (tmp_path / "rebuilt" / "summary.json").read_text() == run_out.summary
    page = (tmp_path / "rebuilt" / "summary.html").read_text()
    assert page.count("<svg") == 3
    assert "bench-plot-trend" in page
    older = rebuild(db, tmp_path / "older", session="s1")
    assert "bench-b" in older[0].read_text()


def test_html_cells_summary_and_extras(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    _assess(db, tmp_path, "s1", ALL_BUT_4, pin=True, ref=80.0)
    row, _ = _assess(db, tmp_path, "s2", set(range(8)), ref=80.0, variant=" + 0")
    cells = ["<td>result</td>", "<td>id</td>", "<td>duration</td>"]
    table_row(row, cells)
    assert len(cells) == 3 + len(COLUMNS)
    text = " ".join(cells)
    assert "40.0% [21.9, 61.3] (8/20)" in text
    assert "gate-fail_tolerance" in text
    header: list[str] = ["<th>r</th>", "<th>t</th>"]
    table_header(header)
    assert "plus pass@1 [95% CI]" in header[6]
    sections = "".join(summary_sections([row], PUBLISHED, {"bench-x (humaneval)": [
        {"plus_pass_at_1": 80.0, "plus_passed": 16, "n_tasks": 20, "pinned": True},
        {"plus_pass_at_1": 40.0, "plus_passed": 8, "n_tasks": 20, "pinned": False}]}))
    for anchor in ("bench-local", "bench-comparison", "bench-gate", "bench-plot-pass",
                   "bench-plot-trend", "bench-plot-throughput"):
        assert f'id="{anchor}"' in sections
    # the gate first, then local results, then the published scores; verdicts coloured
    order = [sections.index(f'id="{a}"') for a in ("bench-gate", "bench-local",
                                                    "bench-comparison", "bench-plots")]
    assert order == sorted(order)
    assert '<td class="verdict-fail">FAIL (tolerance)</td>' in sections
    assert "models without a published score</summary>" in sections
    with history.opened(db) as conn:
        flipped = programs.flip_details(conn, row["run_id"], row["baseline_run"])
    extras = report_html.test_extras_html(row, flipped, "srv: line 1\nsrv: <done>")
    assert "FAIL (tolerance)" in extras[0]
    assert "HumanEval/10" in extras[1]
    assert "first failing input" in extras[1]
    # both finish reasons and token counts, and the program's diff against the baseline
    assert "stop, 20 tokens -&gt; length, 24 tokens" in extras[1]
    assert "-    return 0\n+    return 0 + 0" in html.unescape(extras[1])
    assert "srv: &lt;done&gt;" in extras[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "plugin", "report", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_rebuild_check_merge_and_baselines(tmp_path: Path) -> None:
    a, b = tmp_path / "a" / "history.sqlite", tmp_path / "b" / "history.sqlite"
    _assess(a, tmp_path, "ci-7", ALL_BUT_4, pin=True, ref=80.0)
    assess(b, Session("ci-7", "gpu-2 x86_64 8 cores", "2026-11-26T10:00:00Z"),
                  _result(tmp_path, set(range(4)), profile="bench-y"), _ref(80.0, 5.0, "bench-y"),
                  alpha=0.05)
    done = _cli("--db", str(a), "--check")
    assert done.returncode == 0, done.stderr
    assert (a.parent / "REPORT.md").is_file()
    merged = tmp_path / "m" / "history.sqlite"
    done = _cli("--db", str(merged), "--merge", str(a), str(b), "--check")
    assert done.returncode == 1  # bench-y on gpu-2 failed its gate
    assert "gate failed: bench-y (humaneval, gpu-2 x86_64 8 cores): fail_tolerance" in done.stderr
    summary = json.loads((merged.parent / "summary.json").read_text())
    assert {r["machine"] for r in summary["results"]} == {"hostA x86_64 2 cores",
                                                          "gpu-2 x86_64 8 cores"}
    done = _cli("--db", str(merged), "--baselines")
    assert json.loads(done.stdout)[0]["run_id"] == "ci-7/hostA/bench-x/humaneval"
    done = _cli("--db", str(tmp_path / "none.sqlite"))
    assert done.returncode == 2
    assert "no history database" in done.stderr


def test_summary_json_has_a_schema_version_and_every_row_key_is_documented(
        tmp_path: Path) -> None:
    from plugin.gate.record import Row
    from plugin.report.outputs import SUMMARY_SCHEMA_VERSION, summary_json

    row, _ = _assess(tmp_path / "h.sqlite", tmp_path, "s1", ALL_BUT_4)
    data = json.loads(summary_json("s1", [row]))
    assert data["schema_version"] == SUMMARY_SCHEMA_VERSION == 2
    doc = (ROOT / "docs" / "REPORTS.md").read_text(encoding="utf-8")
    assert f"## summary.json (schema_version {SUMMARY_SCHEMA_VERSION})" in doc
    undocumented = [f.name for f in dataclasses.fields(Row) if f"`{f.name}`" not in doc]
    assert undocumented == []
    assert set(data["results"][0]) == {f.name for f in dataclasses.fields(Row)}


def test_terminal_table_fits_120_columns_and_lists_flips(tmp_path: Path) -> None:
    from plugin.report.text import terminal_lines

    db = tmp_path / "h.sqlite"
    _assess(db, tmp_path, "s1", ALL_BUT_4, pin=True)
    long_name = "bench-qwen3-coder-next-ud-q4-k-xl-with-a-long-name"
    row, _ = _assess(db, tmp_path, "s2", set(range(8)))
    rows = [row, dataclasses.replace(row, profile=long_name, run_id="x")]
    lines = terminal_lines(rows)
    assert max(len(line) for line in lines) <= 120
    assert lines[0].split()[:4] == ["Profile", "Data", "Quant", "plus"]
    assert "Trunc" in lines[0]
    assert any(line.startswith("bench-qwen3-coder-next") and "~" in line for line in lines)
    assert any("flips against the baseline: 9 down, 1 up, exact McNemar p=0.021" in line
               for line in lines)
    assert any("decode speed per request" in line for line in lines)


def test_plots_zoom_colour_failures_and_count_reused_runs_once(tmp_path: Path) -> None:
    from plugin.report import plots

    db = tmp_path / "h.sqlite"
    _assess(db, tmp_path, "s1", ALL_BUT_4, pin=True)
    failing, _ = _assess(db, tmp_path, "s2", set(range(8)))
    assert failing.gate == "fail_tolerance"
    svg = plots.pass_at_1_svg([failing])
    assert "#c00000" in svg and "failing gate" in svg  # noqa: PT018 - one fact: red and named
    assert plots.zoomed([40.0, 80.0]) == (35.0, 85.0)
    assert plots.zoomed([0.0, 0.0]) == (0.0, 10.0)
    assert plots.zoomed([100.0]) == (90.0, 100.0)
    same = {"fingerprint": "a", "plus_passed": 16, "n_tasks": 20, "plus_pass_at_1": 80.0}
    points = [{**same, "pinned": True}, {**same, "pinned": False},
              {**same, "fingerprint": "b", "plus_passed": 8, "plus_pass_at_1": 40.0}]
    kept = plots.distinct_runs(points)
    assert [p["fingerprint"] for p in kept] == ["a", "b"]
    assert kept[0]["pinned"] is True
    # one run: the x axis spans one tick around it, not 0.945 to 1.050
    one = plots.trend_svg({"bench-x (humaneval)": [same]})
    ticks = re.findall(r"<text[^>]*>([^<]*)</text>", one)
    assert ticks[0] == "1"
    assert ticks[1].startswith("run (oldest first")
