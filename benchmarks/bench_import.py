"""Start-up costs: EvalPlus's sanitizer imported plainly and the harness's light way, and
``pytest bench_tests --collect-only``. Each in a fresh process, best of N.

    .venv/bin/python benchmarks/bench_import.py [--runs 5]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = {
    "import evalplus.sanitize (plain: pulls in HF datasets)":
        [sys.executable, "-c", "import evalplus.sanitize"],
    "the harness's sanitize (compat.import_light)":
        [sys.executable, "-c", "from plugin.generation.extract import _sanitize; _sanitize()"],
    "python -c pass (interpreter start, for scale)": [sys.executable, "-c", "pass"],
    "pytest bench_tests --collect-only":
        [sys.executable, "-m", "pytest", "bench_tests", "--collect-only", "-q",
         "-p", "no:cacheprovider"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    for name, command in CASES.items():
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        print(f"{min(times):6.3f} s  (best of {args.runs}; median "
              f"{sorted(times)[len(times) // 2]:.3f} s)  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
