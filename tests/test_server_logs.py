"""Each run keeps its own server log; ``reports/<profile>/server.log`` is the last one.

Real runs of the user's ``bench_tests/test_humaneval_plus.py`` (smoke model, real
sandbox) in a ``pytest`` subprocess of a tiny project, three times: a first run, a run
with another fingerprint (the server starts again), and an unchanged re-run (every answer
is stored, no server starts, so no log is written and the link does not move).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import support

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]


def test_every_run_keeps_its_server_log_and_server_log_is_the_last(bench_project: Any) -> None:
    project = bench_project(bench_project.profile("bench-logs", CTX_SIZE="2048",
                                                  MAX_TOKENS="8"))
    (project.path / "bench_tests" / "test_life.py").unlink()
    shutil.copy(ROOT / "bench_tests" / "test_humaneval_plus.py", project.path / "bench_tests")
    folder = project.path / "reports" / "bench-logs"
    runs = {"one": (), "two": ("--bench-max-tokens", "9"), "three": ("--bench-max-tokens", "9")}
    for run_id, args in runs.items():
        proc = project.start("--bench-limit", "2", *args, run_id=run_id)
        output = support.finish(proc, 300)
        assert proc.returncode == 0, output
    logs = sorted(p.name for p in (folder / "logs").iterdir())
    assert logs == ["server-one.log", "server-two.log"]  # run three started no server
    for name in logs:
        assert "listening on" in (folder / "logs" / name).read_text()
    link = folder / "server.log"
    assert link.is_symlink()
    assert os.readlink(link) == os.path.join("logs", "server-two.log")
