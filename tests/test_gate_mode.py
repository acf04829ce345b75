"""Gate mode (``--bench-strict``) on a real run: one profile that scores, one whose model
file is missing. The run must fail, and every output must name the missing profile.

Real llama-server (smoke model) and real sandbox, through the user's
``bench_tests/test_humaneval_plus.py`` in a ``pytest`` subprocess of a tiny project.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import support

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("strict", [True, False])
def test_a_profile_without_its_model_fails_the_gate_and_is_named_everywhere(
        bench_project: Any, strict: bool) -> None:
    project = bench_project(
        bench_project.profile("bench-good", CTX_SIZE="2048", MAX_TOKENS="8"),
        bench_project.profile("bench-gone", "no-such-model.gguf"))
    (project.path / "bench_tests" / "test_life.py").unlink()
    shutil.copy(ROOT / "bench_tests" / "test_humaneval_plus.py", project.path / "bench_tests")
    proc = project.start("--bench-limit", "3", "-rA", *(("--bench-strict",) if strict else ()),
                         run_id="")
    output = support.finish(proc, 600)
    reports = project.path / "reports"
    summary = json.loads((reports / "summary.json").read_text())
    assert [r["profile"] for r in summary["results"]] == ["bench-good"], output
    (gone,) = summary["unscored"]
    assert (gone["profile"], gone["dataset"]) == ("bench-gone", "humaneval")
    assert gone["outcome"] == ("error" if strict else "skipped")
    assert "model file not found" in gone["reason"]
    assert "no-such-model.gguf" in gone["reason"]
    assert "**bench-gone** (humaneval)" in (reports / "REPORT.md").read_text()
    assert 'id="bench-unscored"' in (reports / "report.html").read_text()
    assert "selected profiles without a score" in output
    outcomes = support.junit_outcomes(reports / "junit.xml")
    assert outcomes["test_humaneval_plus[bench-good]"][0] == "passed", output
    if strict:
        assert proc.returncode == 1, output
        assert outcomes["test_humaneval_plus[bench-gone]"][0] == "error"
    else:
        assert proc.returncode == 0, output
        assert outcomes["test_humaneval_plus[bench-gone]"][0] == "skipped"
