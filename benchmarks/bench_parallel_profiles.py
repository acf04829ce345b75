"""Parallel profiles: ``pytest bench_tests -n 3 --dist loadgroup`` vs one after the other.

Three copies of the smoke profile (tiny CPU model, each its own llama-server container)
run the real HumanEval+ benchmark (generation, sandbox evaluation, report) on the first
``--limit`` tasks, first serially, then with one xdist worker per profile. Every run gets
fresh report folders, so every completion is really generated. Runs alternate
(serial, parallel, serial, ...) so a load change on the machine hits both modes.

    .venv/bin/python benchmarks/bench_parallel_profiles.py [--limit 10] [--repeat 3] [--threads 1]

Prints a table and a JSON line; needs Docker, local/llama.cpp:server, the sandbox image,
the smoke model (make setup) and the HumanEval+ release file (../shared/datasets).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ("bench-par-a", "bench-par-b", "bench-par-c")
MODELS_DIR = ROOT / "build" / "models"


def write_conf(folder: Path, image: str, threads: int | None) -> Path:
    conf = folder / "models.conf"
    sections = [f"[DEFAULT]\nMODELS_DIR={MODELS_DIR}\nCPU_IMAGE={image}\n"]
    extra = f"-np 1 -t {threads}" if threads else "-np 1"
    for name in PROFILES:
        sections.append(f"[{name}]\nNAME=Smoke copy {name[-1]}\nMODEL=smoke-tiny.gguf\n"
                        "CTX_SIZE=2048\nN_GPU_LAYERS=0\nFIT=off\nMAX_TOKENS=64\n"
                        f"EXTRA_ARGS={extra}\nQUANT=F32\n")
    conf.write_text("\n".join(sections), encoding="utf-8")
    return conf


def run(conf: Path, reports: Path, limit: int, workers: int) -> dict[str, Any]:
    """One pytest run; its wall time and the per-profile numbers of summary.json."""
    args = [sys.executable, "-m", "pytest", "bench_tests", "-k", "humaneval_plus", "-q",
            "-p", "no:randomly", "--bench-config", str(conf), "--bench-limit", str(limit),
            "--bench-reports-dir", str(reports), "-o", "addopts="]
    if workers > 1:
        args += ["-n", str(workers), "--dist", "loadgroup"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "PYTEST_"))}
    started = time.monotonic()
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"pytest failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    profiles = {}
    for name in PROFILES:
        summary = json.loads((reports / name / "humaneval" / "summary.json").read_text())
        profiles[name] = {k: summary[k] for k in ("gen_wall_s", "eval_wall_s", "load_time_s",
                                                  "requests_sent")}
    return {"wall_s": round(wall, 2), "profiles": profiles}


def describe(walls: list[float]) -> str:
    return (f"median {statistics.median(walls):6.1f} s  min {min(walls):6.1f} s  "
            f"max {max(walls):6.1f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=10, help="tasks per profile (10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode (3)")
    parser.add_argument("--image", default="local/llama.cpp:server", help="CPU image")
    parser.add_argument("--threads", type=int, default=None,
                        help="llama-server -t per profile (default: its own, all cores)")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    conf = write_conf(folder, args.image, args.threads)
    print(f"{platform.node()}: {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; 3 smoke profiles x {args.limit} tasks, "
          f"llama-server -t {args.threads or 'default'}")
    run(conf, folder / "warm-up", args.limit, 1)  # image/page caches, sandbox oracle cache

    walls: dict[str, list[float]] = {"serial": [], "parallel": []}
    runs: list[dict[str, Any]] = []
    for i in range(args.repeat):
        for mode, workers in (("serial", 1), ("parallel", len(PROFILES))):
            result = run(conf, folder / f"{mode}-{i}", args.limit, workers)
            walls[mode].append(result["wall_s"])
            runs.append({"mode": mode, **result})
            print(f"  {mode:8s} run {i + 1}: {result['wall_s']:6.1f} s", flush=True)

    serial, parallel = statistics.median(walls["serial"]), statistics.median(walls["parallel"])
    print(f"serial   (pytest bench_tests):                       {describe(walls['serial'])}")
    print(f"parallel (pytest bench_tests -n 3 --dist loadgroup): {describe(walls['parallel'])}")
    print(f"speed-up (median serial / median parallel): {serial / parallel:.2f}x")
    print(json.dumps({"limit": args.limit, "repeat": args.repeat, "threads": args.threads,
                      "cores": os.cpu_count(),
                      "load_after": round(os.getloadavg()[0], 1), "serial_s": walls["serial"],
                      "parallel_s": walls["parallel"],
                      "speedup": round(serial / parallel, 2), "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
