"""Generation throughput: the harness client vs a bare async httpx loop, and 4 slots vs 1.

Same HumanEval+ requests (EvalPlus prompts, greedy, max_tokens 768), same llama-server
container (canary model, CPU), in one run:
  (a) plugin.generation.client.generate, concurrency = slots, fresh store (every request sent)
  (b) a bare loop: httpx.AsyncClient + asyncio.Semaphore(slots), nothing stored
Target: (a) throughput >= 95% of (b). Then the same with -np 4 and 4 in flight.
Rounds alternate the order (bare first, then harness first); the best round of each
counts, so a burst of load from elsewhere does not decide the ratio.

    .venv/bin/python benchmarks/bench_generation.py [--tasks 164] [--rounds 1]
Prints a table and a JSON line; needs Docker and local/llama.cpp:server.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from plugin.config.models_conf import load_models_conf  # noqa: E402
from plugin.config.profile import Defaults  # noqa: E402
from plugin.generation.client import generate  # noqa: E402
from plugin.generation.request import Sampling  # noqa: E402
from plugin.server.lifecycle import llama_server  # noqa: E402

DATASET = ROOT.parent / "shared/datasets/HumanEvalPlus-v0.1.10.jsonl.gz"


def prompts(n: int) -> dict[str, str]:
    with gzip.open(DATASET, "rt", encoding="utf-8") as fh:
        tasks = [json.loads(line) for _, line in zip(range(n), fh, strict=False)]
    return {t["task_id"]: t["prompt"] for t in tasks}


async def bare_loop(url: str, items: dict[str, str], sampling: Sampling, slots: int) -> int:
    gate = asyncio.Semaphore(slots)
    tokens = 0
    async with httpx.AsyncClient(timeout=900) as client:
        async def one(prompt: str) -> None:
            nonlocal tokens
            async with gate:
                r = await client.post(url + "/v1/chat/completions", json=sampling.body(prompt))
                tokens += r.json()["usage"]["completion_tokens"]
        await asyncio.gather(*(one(p) for p in items.values()))
    return tokens


def measure(slots: int, items: dict[str, str], rounds: int) -> dict[str, Any]:
    conf = Path(tempfile.mkdtemp()) / "models.conf"
    conf.write_text(f"[bench-g]\nNAME=g\nMODEL=canary-humaneval.gguf\n"
                    f"MODELS_DIR={ROOT / 'models/canary'}\nCTX_SIZE={4096 * slots}\n"
                    f"N_GPU_LAYERS=0\nFIT=off\nEXTRA_ARGS=-np {slots}\n", encoding="utf-8")
    profile = load_models_conf(conf, Defaults(cpu_image="local/llama.cpp:server")).profiles[
        "bench-g"]
    sampling = Sampling()
    out: dict[str, list[float]] = {"harness": [], "bare": []}
    tokens: dict[str, int] = {}
    with llama_server(profile, log_path=conf.parent / "server.log", run_id="bench-gen") as srv:
        def run_bare() -> None:
            t0 = time.perf_counter()
            tokens["bare"] = asyncio.run(bare_loop(srv.base_url, items, sampling, slots))
            out["bare"].append(time.perf_counter() - t0)

        def run_harness(r: int) -> None:
            store = conf.parent / f"completions-{slots}-{r}.jsonl"  # fresh: all sent
            t0 = time.perf_counter()
            results, _ = generate(srv.base_url, items, sampling, store, f"fp{r}",
                                  concurrency=slots, alive=srv.is_running,
                                  healthy=srv.is_alive, headers=srv.headers)
            out["harness"].append(time.perf_counter() - t0)
            tokens["harness"] = sum(c.completion_tokens for c in results.values())

        for r in range(rounds):  # A B, then B A: neither always runs first
            if r % 2 == 0:
                run_bare()
                run_harness(r)
            else:
                run_harness(r)
                run_bare()
    best = {k: min(v) for k, v in out.items()}
    return {"slots": slots, "harness_s": round(best["harness"], 2),
            "bare_s": round(best["bare"], 2), "tokens": tokens["harness"],
            "bare_tokens": tokens["bare"],
            "harness_all_s": [round(x, 2) for x in out["harness"]],
            "bare_all_s": [round(x, 2) for x in out["bare"]],
            "harness_tok_s": round(tokens["harness"] / best["harness"], 1),
            "bare_tok_s": round(tokens["bare"] / best["bare"], 1),
            "ratio": round((tokens["harness"] / best["harness"])
                           / (tokens["bare"] / best["bare"]), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=164)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    items = prompts(args.tasks)
    one = measure(1, items, args.rounds)
    four = measure(4, items, args.rounds)
    print(f"machine: {platform.node()} {platform.machine()}, tasks: {args.tasks}")
    print(f"{'slots':>5} {'harness s':>10} {'bare s':>8} {'harness tok/s':>14} "
          f"{'bare tok/s':>11} {'ratio':>6}")
    for row in (one, four):
        print(f"{row['slots']:>5} {row['harness_s']:>10} {row['bare_s']:>8} "
              f"{row['harness_tok_s']:>14} {row['bare_tok_s']:>11} {row['ratio']:>6}")
    speedup = round(one["harness_s"] / four["harness_s"], 2)
    print(f"4 slots vs 1 (harness wall): x{speedup}")
    print(json.dumps({"one_slot": one, "four_slots": four, "speedup_4_vs_1": speedup}))


if __name__ == "__main__":
    main()
