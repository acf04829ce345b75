"""Load: a profile at its maximum slots, the whole of HumanEval+ at full concurrency, twice;
and the same profile at one slot, where the answers must repeat exactly.

At ``-np 4`` llama-server (4 slots of 4096 tokens each) gets 4 requests at a time from the
harness (checked: the requests' wall times add up to more than twice the run's wall
time). Two complete runs (generation, extraction, sandbox evaluation), each with a fresh
store, against one server. What the harness promises under load is checked:

* no error, no request lost: 164 requests sent, 164 answers, none unjudged;
* every answer stored exactly once (one completions.jsonl line per task, no duplicate);
* every task judged exactly once, and verdicts consistent with the answers: where the
  two runs stored the same answer, they gave it the same verdict.

Identical answers across the two runs are *not* asserted at ``-np 4``: with several
sequences in flight llama.cpp batches them differently from run to run, and greedy
decoding over differently batched float sums can pick another token. llama.cpp does not
promise bit-identical results across batch compositions, so any differing answers are
reported (printed, and named in docs/RELIABILITY.md "Parallel slots and determinism")
instead of failing the test. At ``-np 1`` (one sequence at a time, ``cache_prompt``
off) every request is computed the same way each time, and there identical answers are
asserted.

CI uses the smoke model (164 x 128 tokens, about 13 s a run); ``BENCH_LOAD_MODEL=canary``
runs the canary instead (up to 768 tokens an answer, minutes a run on 2 cores), which
must also score its designed 132/164 both times.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from pathlib import Path

import pytest

import docker
from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults, Profile
from plugin.datasets import Dataset, load_dataset
from plugin.runner import BenchResult, RunOptions, run_benchmark
from plugin.server.lazy import LazyServer

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.stress]

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("LLAMA_IMAGE", "local/llama.cpp:server")
SANDBOX = os.environ.get("BENCH_SANDBOX_IMAGE", "local/bench-sandbox:latest")
CANARY = ROOT / "models/canary/canary-humaneval.gguf"
SMOKE = ROOT / "build/models/smoke-tiny.gguf"
USE_CANARY = os.environ.get("BENCH_LOAD_MODEL") == "canary"
MODEL = CANARY if USE_CANARY else SMOKE
SLOTS = 4
ONE_SLOT_TASKS = 40  # enough prompts to cover many lengths; a run stays short at -np 1
ANSWER_FIELDS = ("content", "reasoning_content", "finish_reason", "prompt_tokens",
                 "completion_tokens")

needs_model = pytest.mark.skipif(not MODEL.exists(), reason=f"model not found: {MODEL} "
                                 "(make setup)")


def _store(path: Path) -> dict[str, dict[str, object]]:
    """task id -> its record; fails if any task was stored more than once."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    counts = Counter(r["task_id"] for r in records)
    twice = sorted(t for t, n in counts.items() if n > 1)
    assert twice == [], f"{path}: answers stored more than once: {twice}"
    return {r["task_id"]: r for r in records}


def _profile(tmp_path: Path, slots: int) -> Profile:
    conf = tmp_path / "models.conf"
    conf.write_text(f"[bench-load]\nNAME=load\nMODEL={MODEL.name}\nMODELS_DIR={MODEL.parent}\n"
                    f"CTX_SIZE={4096 * slots}\nN_GPU_LAYERS=0\nFIT=off\n"
                    f"MAX_TOKENS={768 if USE_CANARY else 128}\n"
                    f"EXTRA_ARGS=-np {slots} -t 1\n", encoding="utf-8")
    profile = load_models_conf(conf, Defaults(cpu_image=IMAGE)).profiles["bench-load"]
    assert profile.slots == slots
    return profile


def _two_runs(tmp_path: Path, profile: Profile, dataset: Dataset, limit: int | None = None
              ) -> tuple[list[BenchResult], dict[str, dict[str, object]],
                         dict[str, dict[str, object]]]:
    """Two complete runs with fresh stores against one server; the results and stores."""
    client = docker.from_env()
    server = LazyServer(profile, run_id=f"load-{uuid.uuid4().hex[:8]}", client=client,
                        log_path=tmp_path / "server.log", lock_dir=tmp_path / "locks")
    results = []
    try:
        for run in ("first", "second"):
            result = run_benchmark(profile, server, dataset, tmp_path / run,
                                   RunOptions(sandbox_image=SANDBOX, limit=limit))
            in_flight = result.generation["request_wall_s"] / result.gen_wall_s
            print(f"{run}: {result.n_tasks} tasks, generation {result.gen_wall_s:.1f} s, "
                  f"{in_flight:.2f} requests in flight on average, evaluation "
                  f"{result.eval_wall_s:.1f} s, plus {result.plus_passed}/{result.n_tasks}")
            if profile.slots > 1:
                assert in_flight > 2.0, "the slots were not driven concurrently"
            results.append(result)
    finally:
        server.close()
        client.close()
    return results, _store(tmp_path / "first/completions.jsonl"), _store(
        tmp_path / "second/completions.jsonl")


def _check_complete(results: list[BenchResult], n_tasks: int) -> None:
    """No request lost, no error, every task answered once and judged once."""
    first, second = results
    assert first.fingerprint == second.fingerprint
    assert first.requests_sent == second.requests_sent == n_tasks
    assert first.n_tasks == second.n_tasks == n_tasks
    assert first.unjudged == second.unjudged == []
    for result in results:
        assert len(result.verdicts) == n_tasks
        journal = [json.loads(line)["task_id"] for line in
                   Path(result.out_dir, "eval", "verdicts.jsonl").read_text().splitlines()]
        twice = sorted(t for t, n in Counter(journal).items() if n > 1)
        assert twice == [], f"tasks judged more than once: {twice}"
        assert sorted(journal) == sorted(result.verdicts), "a task judged twice or never"


def _differing(a: dict[str, dict[str, object]], b: dict[str, dict[str, object]]) -> list[str]:
    return sorted(t for t in a if any(a[t][f] != b[t][f] for f in ANSWER_FIELDS))


@needs_model
def test_max_slots_full_concurrency_twice_loses_nothing(tmp_path: Path) -> None:
    dataset = load_dataset("humaneval")
    results, a, b = _two_runs(tmp_path, _profile(tmp_path, SLOTS), dataset)
    _check_complete(results, 164)
    first, second = results
    assert len(a) == len(b) == 164
    if USE_CANARY:
        assert first.no_answer == second.no_answer == []
    differing = _differing(a, b)
    same = [t for t in a if t not in differing]
    inconsistent = sorted(t for t in same if first.verdicts[t] != second.verdicts[t])
    assert inconsistent == [], "the same answer got different verdicts"
    # Reported, not asserted: llama.cpp does not promise identical answers across batch
    # compositions (docs/RELIABILITY.md, "Parallel slots and determinism").
    print(f"-np {SLOTS}: {len(differing)} of 164 answers differ between the two runs"
          + (f": {differing}" if differing else ""))
    if USE_CANARY and not differing:
        assert (first.base_passed, first.plus_passed) == (132, 132)


@needs_model
def test_one_slot_twice_gives_identical_answers(tmp_path: Path) -> None:
    results, a, b = _two_runs(tmp_path, _profile(tmp_path, 1), load_dataset("humaneval"),
                              limit=ONE_SLOT_TASKS)
    _check_complete(results, ONE_SLOT_TASKS)
    assert _differing(a, b) == [], "answers differ between two runs at -np 1"
    assert results[0].verdicts == results[1].verdicts
