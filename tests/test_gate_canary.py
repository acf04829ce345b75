"""The gate for real: canary model, real llama-server, real sandbox, real report.

One flow, run as the user would (``pytest bench_tests`` in a subprocess, a fresh reports
dir and history database):

1. baseline: ``--bench-update-baseline`` pins the canary's run (first LIMIT tasks);
2. unchanged: the same configuration again passes, nothing flips (answers come from the
   completion store: no request is sent);
3. template change: the profile's EXTRA_ARGS swap the model's ChatML template for
   llama.cpp's built-in ``llama2`` one. The canary answers garbage to any other prompt
   wording, so every designed-to-pass task flips pass -> fail: the run falls below the
   pass@1 of the baseline it shares its tasks with (tolerance 0), the exact McNemar test
   on the flips is significant too, the report lists the flips with their code, and
   ``python -m plugin report`` rebuilds the same REPORT.md;
4. max_tokens: ``--bench-max-tokens 400`` cuts the two designed-to-pass answers longer
   than that (HumanEval/1: 425 tokens, /6: 429): 14/20 against the baseline's 16/20, a
   FAIL whose "what changed" names ``max_tokens 768 -> 400``.

Then ``report.html`` is opened in headless Chromium: the summary tables, the plots and
the flipped-task extra must be in the rendered page, and a screenshot of the max_tokens
regression must show the gate first with its FAIL in colour. BENCH_SCREENSHOT=PATH also
saves that screenshot there (docs/report.png is made that way).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CANARY_DIR = ROOT / "models" / "canary"
LIMIT = 20  # HumanEval/0..19: 16 designed to pass, 4 designed to fail
# One llama.cpp thread: the 2 cores are often shared with other jobs, and llama.cpp's
# spinning worker threads slow down a hundredfold when they are oversubscribed.
PROFILE = "bench-canary"
CHATML = "--jinja -np 1 -t 1"  # the profile as in models.conf
OTHER_TEMPLATE = "-np 1 -t 1 --chat-template llama2"  # a template change: garbage answers
CONF = """\
[DEFAULT]
CPU_IMAGE=local/llama.cpp:server
MAX_TOKENS=768
HEALTH_TIMEOUT=600

[bench-canary]
NAME=Canary (known-answer, HumanEval+)
MODEL=canary-humaneval.gguf
MODELS_DIR={models}
CTX_SIZE=4096
N_GPU_LAYERS=0
FIT=off
EXTRA_ARGS={extra}
QUANT=F32
"""


@dataclass(frozen=True)
class Run:
    name: str
    returncode: int
    output: str
    reports: Path

    def summary(self) -> dict:
        return json.loads((self.reports / "summary.json").read_text(encoding="utf-8"))

    def row(self) -> dict:
        (row,) = [r for r in self.summary()["results"] if r["profile"] == PROFILE]
        return row


def _bench(tmp: Path, name: str, extra: str, *args: str) -> Run:
    conf = tmp / f"models-{name}.conf"
    conf.write_text(CONF.format(models=CANARY_DIR, extra=extra), encoding="utf-8")
    reports = tmp / "reports"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    env["BENCH_CPU_IMAGE"] = os.environ.get("LLAMA_IMAGE", "local/llama.cpp:server")
    command = [sys.executable, "-m", "pytest", "bench_tests/test_humaneval_plus.py",
               "-p", "no:cacheprovider", "-k", PROFILE, f"--bench-config={conf}",
               f"--bench-reports-dir={reports}", f"--bench-limit={LIMIT}", *args]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=1500, check=False)
    kept = tmp / f"run-{name}"  # keep each run's outputs: the next run overwrites them
    kept.mkdir()
    for file in ("REPORT.md", "summary.json", "report.html", "junit.xml"):
        if (reports / file).exists():
            shutil.copy(reports / file, kept / file)
    return Run(name, done.returncode, done.stdout[-8000:] + done.stderr[-4000:], kept)


def _designed_to_pass() -> list[str]:
    path = CANARY_DIR / "canary-humaneval.expected.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [r["task_id"] for r in rows
            if r["designed_to_pass"] and int(r["task_id"].split("/")[1]) < LIMIT]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    tmp = tmp_path_factory.mktemp("gate-canary")
    return {"baseline": _bench(tmp, "baseline", CHATML, "--bench-update-baseline"),
            "unchanged": _bench(tmp, "unchanged", CHATML),
            "template": _bench(tmp, "template", OTHER_TEMPLATE),
            "max_tokens": _bench(tmp, "max_tokens", CHATML, "--bench-max-tokens=400"),
            "db": Run("db", 0, "", tmp / "reports")}


def test_baseline_is_pinned_with_run_id_and_fingerprint(runs: dict[str, Run]) -> None:
    base = runs["baseline"]
    assert base.returncode == 0, base.output
    row = base.row()
    assert row["pinned"] is True
    assert row["gate"] == "partial"  # --bench-limit and nothing pinned before
    assert row["plus_passed"] == len(_designed_to_pass()) == 16
    with sqlite3.connect(runs["db"].reports / "history.sqlite") as conn:
        pins = conn.execute("SELECT run_id, fingerprint FROM baselines").fetchall()
    assert pins == [(row["run_id"], row["fingerprint"])]


def test_unchanged_rerun_passes_without_flips(runs: dict[str, Run]) -> None:
    run = runs["unchanged"]
    assert run.returncode == 0, run.output
    row = run.row()
    assert row["gate"] == "pass"
    assert row["baseline_run"] == runs["baseline"].row()["run_id"]
    assert row["fingerprint"] == runs["baseline"].row()["fingerprint"]
    assert (row["paired"]["b"], row["paired"]["c"], row["paired"]["p_value"]) == (0, 0, 1.0)
    assert row["requests_sent"] == 0  # every answer came from the completion store
    assert row["what_changed"] == []  # the same fingerprint inputs


def test_template_change_fails_against_the_baseline(runs: dict[str, Run]) -> None:
    run = runs["template"]
    assert run.returncode == 1, run.output
    row = run.row()
    assert row["fingerprint"] != runs["baseline"].row()["fingerprint"]
    assert row["gate"] == "fail_tolerance"  # 0/20 against the same 20 tasks' 16/20
    assert (row["reference"], row["delta_pp"]) == (80.0, -80.0)
    assert row["paired"]["regressed"] == _designed_to_pass()
    assert row["paired"]["fixed"] == []
    assert row["paired"]["p_value"] == 2 / 2**16  # significant as well
    assert "FAIL: below reference - tolerance = 80.00%" in run.output
    failure = ET.parse(run.reports / "junit.xml").find(".//testcase/failure")
    assert failure is not None
    assert "HumanEval/0" in failure.get("message", "")
    report_md = (run.reports / "REPORT.md").read_text(encoding="utf-8")
    assert "FAIL (tolerance) (flips: 16 down, 0 up, p=3.1e-05)" in report_md
    # what changed, from the fingerprint inputs stored with both runs
    change = f"EXTRA_ARGS {CHATML} -> {OTHER_TEMPLATE}"
    assert row["what_changed"] == [change]
    assert row["fingerprint_inputs"]["backend"]["extra_args"] == OTHER_TEMPLATE.split()
    assert f"What changed: {change}." in report_md
    assert f"what changed ({PROFILE}, humaneval, against baseline" in run.output


def test_any_two_runs_compare_task_by_task(runs: dict[str, Run], tmp_path: Path) -> None:
    db = str(runs["db"].reports / "history.sqlite")

    def report(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "plugin", "report", "--db", db, *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=300,
                              check=False)

    listed = report("--list")
    assert listed.returncode == 0, listed.stderr
    ids = [run.row()["run_id"] for run in (runs["baseline"], runs["unchanged"],
                                           runs["template"], runs["max_tokens"])]
    assert [line.split()[0] for line in listed.stdout.splitlines()] == ids
    # the template run against the unchanged one (not the pinned baseline): any two runs
    done = report("--compare", ids[1], ids[2], "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "pass->fail 16, fail->pass 0; exact McNemar p = 3.05e-05" in done.stdout
    assert f"what changed: EXTRA_ARGS {CHATML} -> {OTHER_TEMPLATE}" in done.stdout
    flipped = re.findall(r"^\| (HumanEval/\d+) \| pass->fail \|", done.stdout, re.MULTILINE)
    assert flipped == _designed_to_pass()
    written = sorted(p.suffix for p in tmp_path.iterdir())
    assert written == [".html", ".md"]
    assert (tmp_path / next(p.name for p in tmp_path.iterdir() if p.suffix == ".md")
            ).read_text(encoding="utf-8") == done.stdout
    # the other way round, the flips are fixes
    back = report("--compare", ids[2], ids[1], "--out", str(tmp_path))
    assert "pass->fail 0, fail->pass 16" in back.stdout
    unknown = report("--compare", "no-such-run", ids[1])
    assert unknown.returncode == 2
    assert "'no-such-run' names no run; fix: pass a run id from" in unknown.stderr


def test_report_rebuilt_from_the_history_is_identical(runs: dict[str, Run],
                                                      tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "plugin", "report", "--db",
                           str(runs["db"].reports / "history.sqlite"), "--out", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    for name in ("REPORT.md", "summary.json"):
        assert (tmp_path / name).read_bytes() == (runs["max_tokens"].reports / name
                                                  ).read_bytes()


def test_max_tokens_change_fails_and_says_what_changed(runs: dict[str, Run]) -> None:
    run = runs["max_tokens"]
    assert run.returncode == 1, run.output
    row = run.row()
    assert row["gate"] == "fail_tolerance"  # 14/20 against the same tasks' 16/20
    assert row["paired"]["regressed"] == ["HumanEval/1", "HumanEval/6"]
    assert row["what_changed"] == ["max_tokens 768 -> 400"]
    assert row["truncated"] >= 2
    assert "what changed (bench-canary, humaneval, against baseline" in run.output
    assert "max_tokens 768 -> 400" in run.output


# ------------------------------------------------------------------ the browser


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium: scripts/setup.sh installs it (apt-get install chromium)")


def _browser(page: Path, profile_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             f"--user-data-dir={profile_dir}", "--virtual-time-budget=5000"]
    return subprocess.run([_chromium(), *flags, *args, page.as_uri()], capture_output=True,
                          text=True, timeout=180, check=False)


def test_report_renders_in_a_real_browser(runs: dict[str, Run], tmp_path: Path) -> None:
    page = runs["template"].reports / "report.html"
    dom = _browser(page, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    # drop the report's JSON data blob: what is left was rendered (by Jinja or JavaScript)
    html = re.sub(r'data-jsonblob="[^"]*"', "", dom.stdout)
    assert len(html) < len(dom.stdout)
    # the summary: both tables of the seed, the gate table
    for heading in ("Local results (pass@1, greedy)", "Comparison with published scores",
                    'id="bench-gate"'):
        assert heading in html
    assert "GPT-4o (2024-08)" in html
    assert "not published" in html
    # the plots, inline SVG
    for plot in ("bench-plot-pass", "bench-plot-trend", "bench-plot-throughput"):
        start = html.index(f'id="{plot}"')
        assert "<svg" in html[start:start + 400]
    # the results table is built by the report's JavaScript: rendered rows prove it ran
    assert 'class="col-bench7 gate-fail_tolerance"' in html
    assert "FAIL (tolerance)" in html
    # the per-test extras: flipped tasks with their code, the server log tail
    assert "<h4>Tasks that flipped against the baseline (16)</h4>" in html
    assert "<td>HumanEval/0</td><td>pass-&gt;fail</td>" in html
    assert "<h4>llama-server log (tail)</h4>" in html


# The verdict cells' colours (plugin/report/html.py STYLE): FAIL's background, pass's.
FAIL_BACKGROUND = (0xFF, 0xDD, 0xDD)
PASS_BACKGROUND = (0xDD, 0xFF, 0xDD)


def test_screenshot_of_a_regression_shows_the_gate_first_in_colour(
        runs: dict[str, Run], tmp_path: Path) -> None:
    from PIL import Image

    page = runs["max_tokens"].reports / "report.html"
    dom = _browser(page, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    # order: the gate (with what changed), then local results, then published scores
    order = [html.index(f'id="{anchor}"') for anchor in ("bench-gate", "bench-local",
                                                          "bench-comparison")]
    assert order == sorted(order)
    gate = html[order[0]:order[1]]
    assert '<td class="verdict-fail">FAIL (tolerance)</td>' in gate
    assert "max_tokens 768 -&gt; 400" in gate
    # per flip: both finish reasons and token counts, and the diff of the programs
    assert "stop, 425 tokens -&gt; length, 400 tokens" in html
    assert "--- baseline" in html
    shot = tmp_path / "report.png"
    done = _browser(page, tmp_path / "profile-shot", f"--screenshot={shot}",
                    "--window-size=1400,2600")
    assert done.returncode == 0, done.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    width, height = image.size
    pixels = image.load()
    red_rows = [y for y in range(height) for x in range(0, width, 4)
                if pixels[x, y] == FAIL_BACKGROUND]
    assert len(red_rows) > 50, "no FAIL cell in its red background on the screenshot"
    # the FAIL cell is in the first table of the summary: above any "pass" cell there is
    # (the canary's other rows are not in this run; the results table comes later)
    green = [y for y in range(height) for x in range(0, width, 4)
             if pixels[x, y] == PASS_BACKGROUND]
    assert not green or min(red_rows) < min(green)
    if os.environ.get("BENCH_SCREENSHOT"):
        shutil.copy(shot, os.environ["BENCH_SCREENSHOT"])
