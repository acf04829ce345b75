"""Repeat the timing-sensitive tests (marker ``stress``) under a CPU hog.

    .venv/bin/python scripts/test_stress.py                 # 10 runs, one busy loop per core
    .venv/bin/python scripts/test_stress.py --runs 3 --no-hog
    .venv/bin/python scripts/test_stress.py -- -k 'generation'   # extra pytest arguments

Each run is a separate ``pytest -m stress`` process with its own JUnit XML; the hog is one
busy-looping process per core (``--hog N`` for another count) at the tests' own priority,
started before the first run and stopped after the last. At the end one line per test
says how many runs it passed, then the plain total ``N passed, N failed``. Exit status 0
only if every test passed in every run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _spin() -> None:  # pragma: no cover - runs in the hog processes
    while True:
        pass


def outcomes(junit: Path) -> dict[str, str]:
    """test id -> passed | failed | error | skipped."""
    found = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kind = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                kind = "failed" if child.tag == "failure" else child.tag
        found[f"{case.get('classname')}::{case.get('name')}"] = kind
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--hog", type=int, default=os.cpu_count() or 1,
                        help="busy-looping processes (default: one per core)")
    parser.add_argument("--no-hog", dest="hog", action="store_const", const=0)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "stress")
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.hog)]
    for hog in hogs:
        hog.start()
    print(f"[stress] {args.runs} runs of pytest -m stress, {args.hog} busy loops "
          f"on {os.cpu_count()} cores", flush=True)
    tally: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    try:
        for run in range(1, args.runs + 1):
            junit = args.out / f"run-{run:02d}.xml"
            started = time.monotonic()
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "tests", "-m", "stress", "-p", "no:randomly",
                 "-q", f"--junitxml={junit}", *args.pytest_args], cwd=ROOT, check=False,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            (args.out / f"run-{run:02d}.log").write_text(done.stdout)
            found = outcomes(junit) if junit.exists() else {}
            for test, kind in found.items():
                tally[test][kind] += 1
            bad = sorted(t for t, kind in found.items() if kind in ("failed", "error"))
            print(f"[stress] run {run}/{args.runs}: exit {done.returncode}, {len(found)} "
                  f"tests, {len(bad)} not passed, {time.monotonic() - started:.0f} s"
                  + "".join(f"\n[stress]   {t}" for t in bad), flush=True)
            if not found:
                print(done.stdout[-3000:])
                tally["(no tests ran)"]["failed"] += 1
    finally:
        for hog in hogs:
            hog.kill()
    passed = sum(t.get("passed", 0) for t in tally.values())
    failed = sum(t.get("failed", 0) + t.get("error", 0) for t in tally.values())
    for test in sorted(tally):
        counts = tally[test]
        print(f"{counts.get('passed', 0):3d}/{args.runs} passed  {test}"
              + "".join(f"  ({n} {k})" for k, n in sorted(counts.items()) if k != "passed"))
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 and passed else 1


if __name__ == "__main__":
    sys.exit(main())
