"""The bench-gate workflow's ``run:`` steps, executed as a runner would run them.

The steps are read from ``.github/workflows/bench-gate.yml`` (``uses:`` steps are the
checkout and the artifact upload: not run here, but the upload's paths are checked), in a
copy of the project (its tracked files as they are in the working tree, with this
checkout's ``.venv``) with the job's environment: its ``env:`` expressions evaluated
against a context of inputs and repository variables, ``CI=true`` (gate mode),
``GITHUB_STEP_SUMMARY`` pointing at a temporary file. Each step runs with GitHub's
``bash -e`` semantics, stops the job at its first failure, and ``if: always()`` steps
run regardless.

* a canary-only profile selection: the job passes, the summary holds the report, and
  every path the upload step names exists;
* the same steps with a profile whose model file is missing: the job fails (gate mode),
  and the summary names the profile.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from plugin.datasets import SHARED_DATASETS_DIR

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "bench-gate.yml"
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
CANARY_ONLY = "canary and not think"


def evaluate(expression: str, context: dict[str, Any]) -> str:
    """The subset of GitHub's expression language the workflow's env uses:
    ``a || b || 'literal'`` over context paths (``inputs.x``, ``vars.y``, ``github.z``)."""
    for operand in (part.strip() for part in expression.split("||")):
        if operand.startswith("'") and operand.endswith("'"):
            value: Any = operand[1:-1]
        else:
            value = context
            for key in operand.split("."):
                value = value.get(key) if isinstance(value, dict) else None
        if value not in (None, "", False):
            return str(value).lower() if isinstance(value, bool) else str(value)
    return ""


def substitute(text: str, context: dict[str, Any]) -> str:
    return EXPRESSION.sub(lambda m: evaluate(m.group(1), context), text)


@dataclass
class Job:
    passed: bool
    log: str
    summary: str
    workdir: Path
    upload_paths: list[str]


def project_copy(tmp_path: Path) -> Path:
    """The project's tracked and new files as in the working tree (what a checkout of
    this commit holds), this checkout's .venv beside them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    work = tmp_path / "checkout"
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    (work / ".venv").symlink_to(ROOT / ".venv")
    return work


def run_job(work: Path, tmp_path: Path, profiles: str) -> Job:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    job = workflow["jobs"]["bench"]
    context = {"inputs": {"profiles": profiles, "update_baseline": False, "limit": ""},
               "vars": {"BENCH_HISTORY": str(tmp_path / "history" / "history.sqlite")},
               "github": {"run_id": "4242", "run_attempt": "1"}}
    summary = tmp_path / "step-summary.md"
    summary.write_text("")
    (tmp_path / "history").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "PYTEST_"))}
    env.update({k: substitute(str(v), context) for k, v in workflow.get("env", {}).items()})
    env.update(CI="true", GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary),
               # the runner's own dataset cache; here, the release files beside the project
               BENCH_DATASETS_DIR=str(SHARED_DATASETS_DIR))
    passed, log, uploads = True, [], []
    for step in job["steps"]:
        if "uses" in step:
            if step["uses"].startswith("actions/upload-artifact"):
                uploads = [p.strip() for p in step["with"]["path"].splitlines() if p.strip()]
            continue
        if not passed and "always()" not in str(step.get("if", "")):
            continue
        assert "${{" not in step["run"], f"an expression pasted into bash: {step['name']}"
        step_env = {**env, **{k: substitute(str(v), context)
                              for k, v in step.get("env", {}).items()}}
        done = subprocess.run(["bash", "-e", "-c", step["run"]], cwd=work, env=step_env,
                              text=True, capture_output=True, timeout=1800, check=False)
        log.append(f"--- {step['name']}: exit {done.returncode}\n{done.stdout[-4000:]}"
                   f"{done.stderr[-2000:]}")
        passed = passed and done.returncode == 0
    return Job(passed, "\n".join(log), summary.read_text(), work, uploads)


@pytest.fixture(scope="module")
def first_job() -> dict[str, Job]:
    """The passing job, kept for the failing one: it starts from the same stored answers
    and verdicts (a runner keeps no reports between jobs; this only saves minutes)."""
    return {}


def test_the_gate_job_passes_on_the_canary_and_leaves_what_it_uploads(
        tmp_path: Path, first_job: dict[str, Job]) -> None:
    job = run_job(project_copy(tmp_path), tmp_path, CANARY_ONLY)
    first_job["job"] = job
    assert job.passed, job.log
    assert "# Benchmark Results" in job.summary, job.log
    assert "Canary (known-answer, HumanEval+)" in job.summary
    assert job.upload_paths[0] == "reports/"
    for path in (p for p in job.upload_paths if not p.startswith("!")):
        assert (job.workdir / path).exists(), f"the upload step names {path}: missing"
    for name in ("REPORT.md", "report.html", "junit.xml", "summary.json", "baselines.json",
                 "history.sqlite", "from-history/REPORT.md"):
        assert (job.workdir / "reports" / name).exists(), name


def test_the_gate_job_fails_when_a_selected_profile_has_no_model(
        tmp_path: Path, first_job: dict[str, Job]) -> None:
    work = project_copy(tmp_path)
    if "job" in first_job:  # the canary's answers and verdicts: the step only re-reads them
        shutil.copytree(first_job["job"].workdir / "reports", work / "reports",
                        dirs_exist_ok=True)  # the checkout has reports/.gitkeep
        (work / "reports" / "history.sqlite").unlink(missing_ok=True)
    job = run_job(work, tmp_path, f"{CANARY_ONLY} or bench-gpt-oss-120b")
    assert not job.passed, job.log
    assert "--- Benchmarks and gate: exit 1" in job.log
    assert "bench-gpt-oss-120b" in job.summary  # listed without a score, with its reason
    assert "model file not found" in job.summary
