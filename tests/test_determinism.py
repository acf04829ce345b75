"""The determinism check: ``--bench-determinism N`` runs a profile again with ``-np N``.

Unit part: the slot flag is replaced and nothing else changes; the comparison counts
differing answers and flipped verdicts. Real part: the canary through ``pytest
bench_tests`` with ``--bench-determinism 2``. What llama.cpp does not promise (identical
answers with parallel slots) is not asserted; what the harness promises is: a second
server started with ``-np 2`` and everything else equal, 2 requests in flight, every task
asked again, the finding computed from the two stored answer sets, and the same finding
in the terminal, REPORT.md, summary.json and report.html, with the gate untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_report import _result

from plugin.config.models_conf import load_models_conf
from plugin.determinism import compare, with_slots

ROOT = Path(__file__).resolve().parents[1]


def test_with_slots_replaces_only_the_slot_flag() -> None:
    profile = load_models_conf(ROOT / "models.conf").profiles["bench-canary"]
    assert "-np" in profile.extra_args
    twin = with_slots(profile, 4)
    assert twin.slots == 4
    assert twin.extra_args == ("--jinja", "-t", "1", "-np", "4")
    assert profile.extra_args == ("--jinja", "-np", "1", "-t", "1")
    assert replace(twin, extra_args=profile.extra_args) == profile
    for given in (("--parallel", "3", "-t", "1"), ("--parallel=3", "-t", "1"), ("-t", "1")):
        assert with_slots(replace(profile, extra_args=given), 2).extra_args == \
            ("-t", "1", "-np", "2")


def test_compare_counts_differing_answers_and_flipped_verdicts(tmp_path: Path) -> None:
    first = _result(tmp_path, {0, 1, 2, 3})
    same = compare(first, first, 2)
    assert (same.differ, same.flips, same.finding) == ((), (), "2 slots: identical answers")
    tasks = dict(first.tasks)
    tasks["HumanEval/1"] = replace(tasks["HumanEval/1"], answer="other text")
    tasks["HumanEval/2"] = replace(tasks["HumanEval/2"], answer="x", plus="fail")
    second = replace(first, tasks=tasks)
    found = compare(first, second, 4)
    assert found.differ == ("HumanEval/1", "HumanEval/2")
    assert found.flips == (("HumanEval/2", "pass", "fail"),)
    assert found.finding == "4 slots: 2 answers differ, 1 verdict flips"
    assert found.to_json()["flips"] == [{"task": "HumanEval/2", "first": "pass",
                                         "slots": "fail"}]
    # throughput: all completion tokens over the generation wall time (20 x 20 / 10 s)
    assert (found.tokens_per_s, found.tokens_per_s_n) == (40.0, 40.0)
    reused = compare(replace(first, requests_sent=0), second, 4)
    assert reused.tokens_per_s is None  # stored answers: nothing was timed


# ------------------------------------------------------------------------ real run
LIMIT = 8
CONF = """\
[bench-canary]
NAME=Canary (known-answer, HumanEval+)
MODEL=canary-humaneval.gguf
MODELS_DIR={models}
CTX_SIZE=4096
N_GPU_LAYERS=0
FIT=off
EXTRA_ARGS=--jinja -np 1 -t 1
QUANT=F32
"""


def _answers(path: Path) -> dict[str, str]:
    return {r["task_id"]: r["content"] for r in
            (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())}


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("determinism")
    conf = tmp / "models.conf"
    conf.write_text(CONF.format(models=ROOT / "models" / "canary"), encoding="utf-8")
    # no CPU image named: the stock one, or (absent here) the local build it falls back
    # to; the N-slot server must use the image the first one used
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "bench_tests/test_humaneval_plus.py", "-p",
         "no:cacheprovider", "-k", "bench-canary", f"--bench-config={conf}",
         f"--bench-reports-dir={tmp / 'reports'}", f"--bench-limit={LIMIT}",
         "--bench-determinism", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    return tmp / "reports", done.stdout




@pytest.mark.docker
@pytest.mark.slow
def test_a_second_server_with_two_slots_answers_every_task_again(
        checked: tuple[Path, str]) -> None:
    reports, _output = checked
    out = reports / "bench-canary" / "humaneval"
    twin = out / "determinism-np2"
    first, second = _answers(out / "completions.jsonl"), _answers(twin / "completions.jsonl")
    assert set(first) == set(second)
    assert len(first) == LIMIT
    logs = sorted((reports / "bench-canary" / "logs").glob("server-*-np2.log"))
    assert logs, sorted((reports / "bench-canary" / "logs").iterdir())
    text = logs[0].read_text(encoding="utf-8", errors="replace")
    assert "n_slots = 2," in text, text[-2000:]  # llama-server's own account of -np 2
    first_log = (reports / "bench-canary" / "server.log").resolve()
    assert "n_slots = 1," in first_log.read_text(encoding="utf-8", errors="replace")


@pytest.mark.docker
@pytest.mark.slow
def test_the_finding_is_the_stored_answers_and_is_in_every_output(
        checked: tuple[Path, str]) -> None:
    reports, output = checked
    out = reports / "bench-canary" / "humaneval"
    first = _answers(out / "completions.jsonl")
    second = _answers(out / "determinism-np2" / "completions.jsonl")
    differ = sorted(t for t in first if first[t] != second[t])
    (row,) = json.loads((reports / "summary.json").read_text(encoding="utf-8"))["results"]
    det: dict[str, Any] = row["determinism"]
    assert (det["slots"], det["n_tasks"]) == (2, LIMIT)
    assert sorted(det["differ"]) == differ
    first_verdicts = json.loads((out / "summary.json").read_text())["verdicts"]
    second_verdicts = json.loads((out / "determinism-np2" / "summary.json").read_text())[
        "verdicts"]
    flipped = sorted(t for t in first_verdicts
                     if (first_verdicts[t]["plus"] == "pass") !=
                     (second_verdicts[t]["plus"] == "pass"))
    assert sorted(f["task"] for f in det["flips"]) == flipped
    assert set(flipped) <= set(differ)  # a verdict flips only if its answer changed
    assert det["tokens_per_s"]
    assert det["tokens_per_s_n"]
    finding = det["finding"]
    assert finding.startswith("2 slots: ")
    assert f"determinism check (no gate): bench-canary (humaneval): {finding}" in output
    assert finding in (reports / "REPORT.md").read_text(encoding="utf-8")
    assert finding in (reports / "report.html").read_text(encoding="utf-8")
    assert row["gate"] == "partial"  # the check takes part in no gate
