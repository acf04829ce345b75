"""llama-server threads on a busy machine: the canary's decoding speed at -t 1 and at the
default (one thread per core), idle and beside one busy loop per core.

    .venv/bin/python benchmarks/bench_threads.py --tasks 20            # idle
    .venv/bin/python benchmarks/bench_threads.py --tasks 5 --hog       # beside busy loops

One container per setting (the shipped canary, ``-np 1``), the EvalPlus chat prompt of
the first N HumanEval+ tasks sent one at a time, greedy, max_tokens 768; prints the
completion tokens per second of the whole run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import time
from pathlib import Path

import httpx

from plugin.datasets import load_dataset
from plugin.generation.request import user_message

ROOT = Path(__file__).resolve().parents[1]
CANARY = ROOT / "models" / "canary"
IMAGE = os.environ.get("LLAMA_IMAGE", "local/llama.cpp:server")


def _spin() -> None:  # pragma: no cover - the hog
    while True:
        pass


def run(threads: str, prompts: list[str]) -> tuple[float, int]:
    args = ["docker", "run", "-d", "--rm", "-p", "127.0.0.1::8080", "-v",
            f"{CANARY}:/models:ro", IMAGE, "-m", "/models/canary-humaneval.gguf", "-c", "4096",
            "-np", "1", "--jinja", "--host", "0.0.0.0", "--port", "8080"]
    if threads != "default":
        args += ["-t", threads]
    cid = subprocess.check_output(args, text=True).strip()
    try:
        port = subprocess.check_output(["docker", "port", cid, "8080"], text=True)
        url = f"http://127.0.0.1:{port.split(':')[-1].strip()}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        started, tokens = time.monotonic(), 0
        for prompt in prompts:
            answer = httpx.post(f"{url}/v1/chat/completions", timeout=900, json={
                "messages": [{"role": "user", "content": prompt}], "max_tokens": 768,
                "temperature": 0}).json()
            tokens += int(answer["usage"]["completion_tokens"])
        return time.monotonic() - started, tokens
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--hog", action="store_true", help="one busy loop per core beside it")
    parser.add_argument("--threads", nargs="+", default=["1", "default"])
    args = parser.parse_args()
    tasks = list(load_dataset("humaneval").tasks.values())[:args.tasks]
    prompts = [user_message(task.prompt) for task in tasks]
    hogs = [multiprocessing.Process(target=_spin, daemon=True)
            for _ in range(os.cpu_count() or 1)] if args.hog else []
    for hog in hogs:
        hog.start()
    try:
        for threads in args.threads:
            seconds, tokens = run(threads, prompts)
            print(f"threads={threads} hog={bool(hogs)} tasks={len(prompts)} {seconds:.1f} s "
                  f"{tokens} tokens {tokens / seconds:.1f} tok/s", flush=True)
    finally:
        for hog in hogs:
            hog.kill()


if __name__ == "__main__":
    main()
