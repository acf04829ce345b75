"""Real models through the user's command: ``pytest bench_tests -k gemma``.

``[bench-gemma3-270m]`` is a real base model (Gemma 3 270M, Q4_K_M) in completion mode:
EvalPlus's direct-completion prompt to ``/v1/completions``, the program = prompt +
completion, sanitized. The run is a ``pytest`` subprocess on the project's own
models.conf; a small plugin loaded into it (``-p``) logs every request the harness posts,
so the endpoint and the bodies are checked as sent. Scores are not asserted (a 270M
model solves next to nothing); what is asserted can break: the endpoint, the prompt and
stop strings, the stored answers, the programs judged, a verdict for every task, and
that every verdict, base and plus, is the one ``evalplus.evaluate`` 0.3.1 gives the same
samples.jsonl (run in a throwaway container: the model's code never runs on the host).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
GEMMA = ROOT / "build" / "models" / "gemma-3-270m-q4_k_m.gguf"
LIMIT = 5  # tasks per dataset, for CI time; the full comparison is in docs/EVALUATION.md

pytestmark = [
    pytest.mark.docker, pytest.mark.slow,
    pytest.mark.skipif(not GEMMA.is_file(), reason=(
        f"real model not found: {GEMMA} (copy gemma-3-270m-q4_k_m.gguf, sha256 "
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818, there)")),
]

#: Loaded into the benchmark's pytest with -p: appends each POST the harness sends.
REQUEST_LOG_PLUGIN = '''
import json, os
import httpx

_post = httpx.AsyncClient.post


async def post(self, url, *args, **kwargs):
    with open(os.environ["BENCH_TEST_REQUEST_LOG"], "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"url": str(url), "body": kwargs.get("json")}) + "\\n")
    return await _post(self, url, *args, **kwargs)


httpx.AsyncClient.post = post
'''


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def gemma_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    tmp = tmp_path_factory.mktemp("gemma")
    (tmp / "bench_request_log.py").write_text(REQUEST_LOG_PLUGIN, encoding="utf-8")
    log = tmp / "requests.jsonl"
    reports = tmp / "reports"
    env = {**os.environ, "BENCH_TEST_REQUEST_LOG": str(log),
           "PYTHONPATH": os.pathsep.join([str(tmp), os.environ.get("PYTHONPATH", "")]),
           "BENCH_CPU_IMAGE": os.environ.get("LLAMA_IMAGE", "local/llama.cpp:server")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "bench_tests", "-p", "no:cacheprovider",
         "-p", "bench_request_log", "-k", "gemma", f"--bench-limit={LIMIT}",
         f"--bench-reports-dir={reports}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600, check=False)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert "2 passed" in done.stdout, done.stdout[-3000:]
    return reports, _jsonl(log)


@pytest.mark.parametrize("dataset", ["humaneval", "mbpp"])
def test_gemma_completion_mode_end_to_end(gemma_run, dataset):
    from evalplus.provider.utility import EOS, extra_eos_for_direct_completion
    from evalplus.sanitize import sanitize

    from plugin.config.models_conf import load_models_conf
    from plugin.config.profile import select_tasks
    from plugin.datasets import load_dataset

    reports, requests = gemma_run
    full = load_dataset(dataset).tasks
    profile = load_models_conf(ROOT / "models.conf").profiles["bench-gemma3-270m"]
    subset = select_tasks(profile.tasks, list(full))
    tasks = {task_id: full[task_id] for task_id in subset[:LIMIT]}
    out = reports / "bench-gemma3-270m" / dataset

    # the requests: /v1/completions, EvalPlus's direct-completion prompt and stop strings
    sent = {r["body"].get("prompt"): r for r in requests if r["body"].get("prompt") in {
        t.prompt.strip() + "\n" for t in tasks.values()}}
    assert len(sent) == LIMIT, [r["url"] for r in requests]
    for request in sent.values():
        assert request["url"].endswith("/v1/completions"), request["url"]
        body = request["body"]
        assert body["stop"] == list(EOS) + extra_eos_for_direct_completion(dataset)
        assert (body["temperature"], body["top_p"], body["cache_prompt"]) == (0.0, 1.0, False)
        assert "messages" not in body
    assert all(r["url"].endswith("/v1/completions") for r in requests)

    # the stored answers: the completion text, as the server ended it
    completions = {c["task_id"]: c for c in _jsonl(out / "completions.jsonl")}
    assert set(completions) == set(tasks)
    assert len({c["fingerprint"] for c in completions.values()}) == 1
    assert all(c["finish_reason"] in ("stop", "length") for c in completions.values())
    assert sum(bool(c["content"].strip()) for c in completions.values()) >= LIMIT - 1
    assert not any(c["reasoning_content"] for c in completions.values())
    stops = list(EOS) + extra_eos_for_direct_completion(dataset)
    for c in completions.values():
        if c["finish_reason"] == "stop":  # the server cut at a stop string, not after it
            assert not any(s in c["content"] for s in stops), c["content"]

    # the programs judged: prompt + completion, sanitized as EvalPlus does
    samples = {s["task_id"]: s["solution"] for s in _jsonl(out / "samples.jsonl")}
    assert set(samples) == set(tasks)
    with_entry_point = 0
    for task_id, task in tasks.items():
        program = task.prompt.strip() + "\n" + completions[task_id]["content"].replace(
            "\t", "    ")
        assert samples[task_id] == sanitize(program, entrypoint=task.entry_point), task_id
        if dataset == "humaneval" and f"def {task.entry_point}(" in samples[task_id]:
            with_entry_point += 1  # starts with the prompt's code (blank lines dropped)
            prompt_lines = [line for line in task.prompt.splitlines() if line.strip()]
            solution_lines = [line for line in samples[task_id].splitlines() if line.strip()]
            assert solution_lines[:len(prompt_lines)] == prompt_lines, task_id
    assert dataset != "humaneval" or with_entry_point >= 1

    # a verdict for every task, the mode recorded and shown
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert (summary["n_tasks"], summary["unjudged"], summary["prompt_mode"]) == (
        LIMIT, [], "completion")
    assert set(summary["verdicts"]) == set(tasks)
    assert all(v["plus"] in ("pass", "fail", "timeout") for v in summary["verdicts"].values())
    assert "| Q4_K_M, completion |" in (reports / "REPORT.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("dataset", ["humaneval", "mbpp"])
def test_gemma_verdicts_equal_evalplus_evaluate_on_the_same_samples(gemma_run, dataset,
                                                                     tmp_path):
    """Fidelity on real output: per task, the harness's base and plus verdicts are
    evalplus.evaluate's on the harness's own samples.jsonl (HumanEval/32 would be the one
    allowed difference, the find_zero fix; it is not among these tasks)."""
    import docker
    from benchmarks.evalplus_agreement import compare

    reports, _requests = gemma_run
    client = docker.from_env(timeout=120)
    try:
        found = compare(reports / "bench-gemma3-270m" / dataset, client, tmp_path)
    finally:
        client.close()
    assert found["n_tasks"] == LIMIT
    assert found["missing"] == []
    assert found["differ"] == {}
    assert found["evalplus"] == found["harness"]
