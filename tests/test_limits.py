"""Limit policies (--limits harness | evalplus), the memory budget per test process, and
verdicts decided by the clock: the two causes of disagreement with evalplus 0.3.1 on
MBPP+ (docs/EVALUATION.md, "Time limits" and "Memory"), each as a regression case.

The programs here are written by this test (not generated), and still run only in the
sandbox container or, for evalplus, in a throwaway container of the sandbox image.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from plugin.containers import client as containers
from plugin.datasets import Dataset, load_dataset
from plugin.evaluation.backends import DEFAULT_IMAGE
from plugin.evaluation.judging import evaluate_samples
from plugin.evaluation.plan import Limits
from plugin.evaluation.results import EvalResult
from plugin.sandbox import protocol
from plugin.sandbox.evaluate import clock_note

IMAGE = os.environ.get("SANDBOX_IMAGE", DEFAULT_IMAGE)

# Correct, but its first call sleeps 1.8 s: inside the harness's 4 s minimum per test,
# beyond evalplus 0.3.1's 1 s (the sleep does not depend on the machine's speed).
SLOW_BUT_CORRECT = '''\
import time
_slept = False
def has_close_elements(numbers, threshold):
    global _slept
    if not _slept:
        _slept = True
        time.sleep(1.8)
    return any(abs(a - b) < threshold for i, a in enumerate(numbers)
               for b in numbers[i + 1:])
'''

# Correct, but its first call maps 2 GiB of address space (never touched, so it costs no
# RAM). Measured with evalplus.evaluate 0.3.1 and its default 4 GiB cap per test process:
# alone it passes up to 2.5 GiB; after Mbpp/255, whose ground truth evalplus's workers
# hold when they fork the test process, it fails from 1.5 GiB on.
NEEDS_MEMORY = '''\
import mmap
_mapped = False
def similar_elements(test_tup1, test_tup2):
    global _mapped
    if not _mapped:
        _mapped = True
        region = mmap.mmap(-1, 2 << 30)
        region.close()
    return tuple(set(test_tup1) & set(test_tup2))
'''
HEAVY = "Mbpp/255"  # combinations_colors: plus outputs of about a gigabyte


# ------------------------------------------------------------------------ unit: policy
def test_policies_and_their_identity() -> None:
    harness, evalplus = Limits.named("harness"), Limits.named("evalplus")
    assert (harness.min_time_limit, harness.gt_time_limit_factor, harness.load_scaling) \
        == protocol.POLICIES["harness"] == (4.0, 4.0, True)
    assert (evalplus.min_time_limit, evalplus.gt_time_limit_factor,
            evalplus.load_scaling) == (1.0, 4.0, False)
    assert harness.other().policy == "evalplus"
    assert evalplus.other().policy == "harness"
    assert Limits() == harness
    custom = Limits.named("evalplus", min_time_limit=2.0)
    assert custom.policy == "custom"
    assert custom.min_time_limit == 2.0
    assert Limits.named("evalplus", min_time_limit=1.0).policy == "evalplus"
    with pytest.raises(ValueError, match="harness or evalplus"):
        Limits.named("fast")
    # the policy is part of every verdict's key: switching it judges again
    assert len({repr(x.identity()) for x in (harness, evalplus, custom)}) == 3


def testclock_notes() -> None:
    assert clock_note("timeout", True, 0.0, 0.0, "evalplus") == "timed out"
    assert clock_note("fail", True, 0.2, 0.9, "evalplus") == "failed at its time limit"
    assert clock_note("fail", False, 0.9, 3.0, "evalplus") is None  # wrong, not slow
    assert clock_note("pass", False, 0.1, 0.4, "evalplus") is None
    assert "time out under the evalplus limits (180%" in str(
        clock_note("pass", False, 0.45, 1.8, "evalplus"))
    assert clock_note("pass", False, 0.6, 0.2, "harness") == \
        "passed using 60% of its time limit"


# ------------------------------------------------------------------ docker: regressions
@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    client = containers.docker_client(timeout=120)
    try:
        client.images.get(IMAGE)
    except Exception:
        pytest.fail(f"sandbox image {IMAGE} missing: build it with docker/sandbox/build-debian.sh")
    yield client
    client.close()




def _subset(name: str, tasks: list[str]) -> Dataset:
    full = load_dataset(name)
    return replace(full, tasks={t: full.tasks[t] for t in tasks})


def _judge(data: Dataset, solutions: dict[str, str], out: Path, client: Any, cache: Path,
           limits: Limits, workers: int = 2) -> EvalResult:
    return evaluate_samples(data, solutions, out, image=IMAGE, docker_client=client,
                            cache_dir=cache, limits=limits, workers=workers)


@pytest.mark.docker
def test_slow_correct_answer_passes_at_4_s_and_fails_at_1_s(
        docker_client: Any, oracle_cache: Path, tmp_path: Path) -> None:
    data = _subset("humaneval", ["HumanEval/0", "HumanEval/2"])
    solutions = {"HumanEval/0": SLOW_BUT_CORRECT,
                 "HumanEval/2": "def truncate_number(number):\n    return number % 1.0\n"}
    harness = _judge(data, solutions, tmp_path / "harness", docker_client, oracle_cache,
                     Limits.named("harness"))
    evalplus = _judge(data, solutions, tmp_path / "evalplus", docker_client, oracle_cache,
                      Limits.named("evalplus"))
    slow_h, slow_e = harness.verdicts["HumanEval/0"], evalplus.verdicts["HumanEval/0"]
    assert (slow_h.base_status, slow_h.plus_status) == ("pass", "pass")
    assert slow_e.base_status != "pass"
    # both verdicts are flagged as decided by the clock, and say why
    assert slow_h.clock
    assert "would time out under the evalplus limits" in slow_h.clock
    assert slow_e.clock
    assert "time" in slow_e.clock
    assert set(harness.clock_decided()) == set(evalplus.clock_decided()) == {"HumanEval/0"}
    assert harness.summary()["clock_decided"] == 1
    # the quick, correct answer is decided by nobody's clock
    assert harness.verdicts["HumanEval/2"].plus_passed
    assert not harness.verdicts[
        "HumanEval/2"].clock


@pytest.mark.docker
@pytest.mark.slow
def test_memory_needed_after_a_heavy_task_passes_in_the_harness_not_in_evalplus(
        docker_client: Any, oracle_cache: Path, tmp_path: Path) -> None:
    from benchmarks.evalplus_agreement import evalplus_evaluate

    data = _subset("mbpp", [HEAVY, "Mbpp/2"])
    heavy = data.tasks[HEAVY].canonical_program
    solutions = {HEAVY: heavy, "Mbpp/2": NEEDS_MEMORY}
    # one worker: the heavy task is judged first (longest first), in the same worker
    ours = _judge(data, solutions, tmp_path / "harness", docker_client, oracle_cache,
                  Limits.named("evalplus"), workers=1)
    assert {t: (v.base_status, v.plus_status) for t, v in ours.verdicts.items()} == {
        HEAVY: ("pass", "pass"), "Mbpp/2": ("pass", "pass")}

    def evalplus(tasks: list[str], name: str) -> dict[str, tuple[str, str]]:
        samples = tmp_path / f"{name}.jsonl"
        samples.write_text("".join(json.dumps({"task_id": t, "solution": solutions[t]}) + "\n"
                                   for t in tasks))
        with tempfile.TemporaryDirectory(dir=tmp_path) as work:
            found = evalplus_evaluate(docker_client, "mbpp", samples, tasks, Path(work),
                                      image=IMAGE, limits=Limits.named("evalplus"),
                                      max_memory=str(4 << 30))  # evalplus's default cap
        return {t: (r[0]["base_status"], r[0]["plus_status"]) for t, r in found.items()}

    # evalplus 0.3.1: alone, the answer passes; after the heavy task it fails, and so does
    # the heavy task's own canonical solution (its plus outputs need memory too)
    assert evalplus(["Mbpp/2"], "alone") == {"Mbpp/2": ("pass", "pass")}
    after = evalplus([HEAVY, "Mbpp/2"], "after-heavy")
    assert after["Mbpp/2"] == ("fail", "fail")
    assert after[HEAVY] == ("pass", "fail")


@pytest.mark.docker
def test_a_clock_decided_verdict_reaches_the_run_summary(
        docker_client: Any, oracle_cache: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """Through the runner: stored answers (no server is started), the real sandbox, the
    run's summary.json and the report row."""
    from types import SimpleNamespace

    from plugin.config.models_conf import load_models_conf
    from plugin.config.profile import Defaults
    from plugin.gate.record import Row
    from plugin.generation.store import Completion, CompletionStore
    from plugin.report.outputs import summary_json
    from plugin.runner import RunOptions, run_benchmark, run_fingerprint, sampling_for

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    conf = tmp_path / "models.conf"
    conf.write_text("[bench-slow]\nNAME=slow\nMODEL=m.gguf\nCTX_SIZE=512\nN_GPU_LAYERS=0\n"
                    f"MODELS_DIR={tmp_path}\nTASKS=HumanEval/0-1\n", encoding="utf-8")
    profile = load_models_conf(conf, Defaults(cpu_image="img")).profiles["bench-slow"]
    server = SimpleNamespace(image_id=lambda: "sha256:x", started=False)
    full = load_dataset("humaneval")
    data = _subset("humaneval", ["HumanEval/0", "HumanEval/1"])
    fp = run_fingerprint(profile, server, data, sampling_for(profile))
    out = tmp_path / "run"
    store = CompletionStore(out / "completions.jsonl")
    answers = {"HumanEval/0": SLOW_BUT_CORRECT,
               "HumanEval/1": full.tasks["HumanEval/1"].canonical_program}
    for task_id, code in answers.items():
        store.append(Completion(task_id, fp, f"```python\n{code}```", "", "stop", 10, 50, 0,
                                None, 100.0, 0.5, 1))
    result = run_benchmark(profile, server, full, out,
                           RunOptions(sandbox_image=IMAGE, limits=Limits.named("harness")))
    assert result.requests_sent == 0
    assert result.plus_passed == 2
    assert list(result.clock_decided) == ["HumanEval/0"]
    stored = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert stored["limits"] == "harness"
    assert "would time out under the evalplus limits" in stored["clock_decided"]["HumanEval/0"]
    row = Row.from_json({**{k: stored.get(k) for k in ("profile", "dataset", "n_tasks")},
                         "clock_decided": stored["clock_decided"], "limits": "harness"})
    assert json.loads(summary_json("s", [row]))["results"][0]["clock_decided"] == \
        stored["clock_decided"]
