"""End to end: `pytest bench_tests` on real llama-server containers and the real sandbox.

These run the user's command in a subprocess (fresh reports dir each time), so they
cover the whole path: models.conf -> container -> EvalPlus prompts -> completions ->
sanitize -> sandbox evaluation -> gate -> pytest-html report.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str, reports: Path, conf: Path | None = None,
              timeout: float = 2400) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BENCH_CPU_IMAGE": os.environ.get("LLAMA_IMAGE",
                                                           "local/llama.cpp:server")}
    command = [sys.executable, "-m", "pytest", "bench_tests", "-p", "no:cacheprovider",
               f"--bench-reports-dir={reports}", *args]
    if conf is not None:
        command.append(f"--bench-config={conf}")
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def summary(reports: Path, profile: str) -> dict:
    return json.loads((reports / profile / "humaneval" / "summary.json").read_text())


def test_canary_profiles_reproduce_their_designed_verdicts(tmp_path):
    """The main job: both canaries, all 164 tasks, exact per-task verdicts."""
    reports = tmp_path / "reports"
    result = run_bench("-k", "canary", reports=reports)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "4 passed" in result.stdout

    plain = summary(reports, "bench-canary")
    assert (plain["n_tasks"], plain["plus_passed"], plain["base_passed"]) == (164, 132, 132)
    assert plain["no_answer"] == []
    assert plain["truncated"] == []

    think = summary(reports, "bench-canary-think")
    assert think["truncated"] == ["HumanEval/81"]
    assert think["plus_passed"] == 131
    assert think["verdicts"]["HumanEval/81"]["base"] != "pass"
    completions = [json.loads(line) for line in
                   (reports / "bench-canary-think/humaneval/completions.jsonl").open()]
    assert all(c["reasoning_content"].strip() for c in completions)

    page = (reports / "report.html").read_text(encoding="utf-8")
    for needle in ("bench-canary", "plus pass@1", "Reference", "Delta",
                   "Comparison with published scores", "80.5%"):
        assert needle in page, needle
    assert "<script src=" not in page  # self-contained
    assert "| Canary (known-answer, HumanEval+) |" in (reports / "REPORT.md").read_text()


def test_smoke_profile_runs_the_whole_pipeline(tmp_path):
    reports = tmp_path / "reports"
    result = run_bench("-k", "smoke", "--bench-limit=6", reports=reports)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    data = summary(reports, "bench-smoke")
    assert data["n_tasks"] == 6
    assert data["plus_passed"] == 0  # random weights
    assert data["requests_sent"] == 6
    assert (reports / "bench-smoke/server.log").stat().st_size > 0
    assert len((reports / "bench-smoke/humaneval/completions.jsonl").read_text()
               .splitlines()) == 6

    again = run_bench("-k", "smoke", "--bench-limit=6", reports=reports)
    assert again.returncode == 0, again.stdout[-3000:]
    rerun = summary(reports, "bench-smoke")
    assert rerun["requests_sent"] == 0
    assert rerun["server_started"] is False  # unchanged profile: container never started


def test_thinking_that_eats_the_budget_is_reported_as_no_answer(tmp_path):
    """The GLM-4.7-Flash finding, reproduced with a real server: a template that opens
    <think>, --reasoning-format deepseek, content '' and finish_reason length."""
    conf = tmp_path / "models.conf"
    conf.write_text(
        "[bench-think-smoke]\nNAME=Thinking smoke\nMODEL=smoke-tiny-think.gguf\n"
        f"MODELS_DIR={ROOT / 'build/models'}\nCTX_SIZE=2048\nN_GPU_LAYERS=0\nFIT=off\n"
        "MAX_TOKENS=24\nEXTRA_ARGS=-np 1 --jinja --reasoning-format deepseek\n",
        encoding="utf-8")
    reports = tmp_path / "reports"
    result = run_bench("-k", "humaneval", "--bench-limit=3", reports=reports, conf=conf)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "3 task(s) got no answer (empty content); 3 of them because thinking used the " \
           "whole max_tokens budget" in result.stdout
    data = summary(reports, "bench-think-smoke")
    assert data["thinking_exhausted"] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
