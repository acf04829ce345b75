"""Load: a profile at its maximum slots, the whole of HumanEval+ at full concurrency, twice.

The profile runs llama-server with ``-np 4`` (4 slots of 4096 tokens each) and the harness
keeps 4 requests in flight (checked: the requests' wall times add up to more than twice
the run's wall time). Two complete runs (generation, extraction, sandbox evaluation),
each with a fresh store, against one server: no error, every answer stored and judged,
and the two stores hold identical answers under the same fingerprint.

CI uses the smoke model (164 x 128 tokens, about 13 s a run); ``BENCH_LOAD_MODEL=canary``
runs the canary instead (up to 768 tokens an answer, minutes a run on 2 cores), which
must also score its designed 132/164 both times.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

import docker
from plugin.config import Defaults, load_models_conf
from plugin.datasets import load_dataset
from plugin.lazy_server import LazyServer
from plugin.runner import RunOptions, run_benchmark

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("LLAMA_IMAGE", "local/llama.cpp:server")
SANDBOX = os.environ.get("BENCH_SANDBOX_IMAGE", "local/bench-sandbox:latest")
CANARY = ROOT.parent / "shared/models/canary-humaneval.gguf"
SMOKE = ROOT / "build/models/smoke-tiny.gguf"
USE_CANARY = os.environ.get("BENCH_LOAD_MODEL") == "canary"
MODEL = CANARY if USE_CANARY else SMOKE
SLOTS = 4
ANSWER_FIELDS = ("content", "reasoning_content", "finish_reason", "prompt_tokens",
                 "completion_tokens")


def _store(path: Path) -> dict[str, dict[str, object]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return {r["task_id"]: r for r in records}


@pytest.mark.skipif(not MODEL.exists(), reason=f"model not found: {MODEL} (make setup)")
def test_max_slots_full_concurrency_twice_gives_identical_stores(tmp_path: Path) -> None:
    conf = tmp_path / "models.conf"
    conf.write_text(f"[bench-load]\nNAME=load\nMODEL={MODEL.name}\nMODELS_DIR={MODEL.parent}\n"
                    f"CTX_SIZE={4096 * SLOTS}\nN_GPU_LAYERS=0\nFIT=off\n"
                    f"MAX_TOKENS={768 if USE_CANARY else 128}\n"
                    f"EXTRA_ARGS=-np {SLOTS}\n", encoding="utf-8")
    profile = load_models_conf(conf, Defaults(cpu_image=IMAGE)).profiles["bench-load"]
    assert profile.slots == SLOTS
    dataset = load_dataset("humaneval")
    client = docker.from_env()
    server = LazyServer(profile, run_id=f"load-{uuid.uuid4().hex[:8]}", client=client,
                        log_path=tmp_path / "server.log", lock_dir=tmp_path / "locks")
    results = []
    try:
        for run in ("first", "second"):
            result = run_benchmark(profile, server, dataset, tmp_path / run,
                                   RunOptions(sandbox_image=SANDBOX))
            in_flight = result.generation["request_wall_s"] / result.gen_wall_s
            print(f"{run}: {result.n_tasks} tasks, generation {result.gen_wall_s:.1f} s, "
                  f"{in_flight:.2f} requests in flight on average, evaluation "
                  f"{result.eval_wall_s:.1f} s, plus {result.plus_passed}/{result.n_tasks}")
            assert in_flight > 2.0, "the slots were not driven concurrently"
            results.append(result)
    finally:
        server.close()
        client.close()
    first, second = results
    assert first.fingerprint == second.fingerprint
    assert first.requests_sent == second.requests_sent == 164
    assert first.unjudged == second.unjudged == []
    if USE_CANARY:
        assert first.no_answer == second.no_answer == []
    a, b = _store(tmp_path / "first/completions.jsonl"), _store(
        tmp_path / "second/completions.jsonl")
    assert len(a) == len(b) == 164
    differing = sorted(t for t in a if any(a[t][f] != b[t][f] for f in ANSWER_FIELDS))
    assert differing == [], "answers differ between the two runs"
    assert first.verdicts == second.verdicts
    assert len(first.verdicts) == 164
    if USE_CANARY:
        assert (first.base_passed, first.plus_passed) == (132, 132)
