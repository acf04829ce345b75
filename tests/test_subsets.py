"""Fixed task subsets (TASKS / --bench-tasks) and baselines pinned in reference-scores.json.

A subset run is partial: the gate compares it with a pinned baseline task by task only.
On a machine whose history database is empty (a fresh clone, a CI runner) the baseline
pinned in reference-scores.json stands in, so the subset is gated from the first run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_report import _bench_result, _session

from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults, parse_tasks, select_tasks
from plugin.config.settings import SETTINGS, resolve
from plugin.errors import ConfigError
from plugin.gate import history
from plugin.gate.assess import assess
from plugin.gate.references import load_references
from plugin.runner import TaskFacts

ROOT = Path(__file__).resolve().parents[1]
HE = [f"HumanEval/{i}" for i in range(20)]
MBPP = ["Mbpp/2", "Mbpp/3", "Mbpp/4", "Mbpp/6", "Mbpp/7", "Mbpp/8", "Mbpp/11"]


def test_ranges_and_single_ids_select_tasks_in_dataset_order() -> None:
    spec = "HumanEval/12-14, HumanEval/3 Mbpp/4-7"
    assert select_tasks(spec, HE) == ["HumanEval/3", "HumanEval/12", "HumanEval/13",
                                      "HumanEval/14"]
    assert select_tasks(spec, MBPP) == ["Mbpp/4", "Mbpp/6", "Mbpp/7"]  # 5 is no task


def test_a_dataset_the_spec_does_not_name_runs_every_task() -> None:
    assert select_tasks("HumanEval/0-3", MBPP) == MBPP
    assert select_tasks(None, HE) == HE
    assert select_tasks("", HE) == HE


@pytest.mark.parametrize(("spec", "match"), [
    ("HumanEval/x", "'HumanEval/x' is not a task id"),
    ("HumanEval/5-2", "ends before it starts"),
    ("0-11", "'0-11' is not a task id"),
])
def test_bad_specs_name_the_item(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_tasks(spec)


def _conf(tmp_path: Path, tasks: str) -> Path:
    path = tmp_path / "models.conf"
    path.write_text(f"[bench-x]\nNAME=x\nMODEL=x.gguf\nCTX_SIZE=512\nN_GPU_LAYERS=0\n"
                    f"TASKS={tasks}\n", encoding="utf-8")
    return path


def test_a_bad_tasks_key_is_blamed_on_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_models_conf(_conf(tmp_path, "HumanEval/1-x"))
    text = str(info.value)
    assert "models.conf:6" in text
    assert "'HumanEval/1-x' is not a task id" in text
    assert "fix:" in text


def test_the_option_replaces_tasks_and_all_runs_everything(tmp_path: Path) -> None:
    path = _conf(tmp_path, "HumanEval/0-3")
    assert load_models_conf(path).profiles["bench-x"].tasks == "HumanEval/0-3"
    other = load_models_conf(path, Defaults(tasks="HumanEval/7",
                                            origins={"tasks": "command line --bench-tasks"}))
    assert other.profiles["bench-x"].tasks == "HumanEval/7"
    assert other.profiles["bench-x"].overrides["TASKS"] == "command line --bench-tasks"
    assert load_models_conf(path, Defaults(tasks="all")).profiles["bench-x"].tasks is None


def test_bench_tasks_option_is_checked_where_it_is_given() -> None:
    setting = next(s for s in SETTINGS if s.name == "tasks")
    assert resolve(setting, "all", {}, None)[0] == "all"
    with pytest.raises(ConfigError, match="BENCH_TASKS"):
        resolve(setting, None, {"BENCH_TASKS": "Mbpp/two"}, None)


def test_gemma_profile_ships_a_subset_with_pinned_baselines_of_exactly_that_subset() -> None:
    from plugin.datasets import load_dataset

    profile = load_models_conf(ROOT / "models.conf").profiles["bench-gemma3-270m"]
    refs = load_references(ROOT / "reference-scores.json")
    for dataset in ("humaneval", "mbpp"):
        subset = select_tasks(profile.tasks, list(load_dataset(dataset).tasks))
        pinned = refs.for_profile(profile.name, dataset).pinned
        assert pinned is not None, dataset
        assert sorted(pinned.passed) == sorted(subset), dataset
        assert pinned.source == "reference-scores.json"


# ------------------------------------------------------------------ pinned in the file


def _refs(tmp_path: Path, pin: dict[str, Any]) -> Path:
    path = tmp_path / "reference-scores.json"
    path.write_text(json.dumps({"metadata": {}, "models": {}, "profiles": {"bench-x": {
        "humaneval_plus": None, "baselines": {"humaneval": pin},
        "provenance": {"kind": "none"}}}}), encoding="utf-8")
    return path


PIN = {"run_id": "s0/host/bench-x/humaneval", "fingerprint": "0123456789abcdef",
       "recorded": "2026-12-01T00:00:00Z", "partial": True,
       "tasks": HE[:10], "passed": HE[:6]}


@pytest.mark.parametrize(("change", "match"), [
    ({"run_id": ""}, "needs run_id and fingerprint"),
    ({"tasks": []}, "non-empty task list"),
    ({"passed": ["HumanEval/99"]}, "outside its task list"),
])
def test_a_bad_pin_names_the_profile_and_the_fix(tmp_path: Path, change: dict[str, Any],
                                                   match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        load_references(_refs(tmp_path, {**PIN, **change}))
    assert "bench-x" in str(info.value)
    assert "fix:" in str(info.value)


def _subset_result(tmp_path: Path, passing: set[str], n: int = 10) -> Any:
    verdicts = {t: {"base": "pass" if t in passing else "fail",
                    "plus": "pass" if t in passing else "fail"} for t in HE[:n]}
    tasks = {t: TaskFacts(t, v["base"], v["plus"], answer="x", solution="def f(): pass",
                          finish_reason="stop", completion_tokens=5, reasoning_tokens=0,
                          wall_s=0.1, first_failing_input=None) for t, v in verdicts.items()}
    score = round(100 * len(passing) / n, 2)
    return _bench_result(
        profile="bench-x", display_name="x", quant="Q4_K_M", dataset="humaneval",
        dataset_version="v", dataset_sha256="sha", n_tasks=n, partial=True,
        base_passed=len(passing), plus_passed=len(passing), base_pass_at_1=score,
        plus_pass_at_1=score, no_answer=[], thinking_exhausted=[], truncated=[], unjudged=[],
        generation={}, requests_sent=10, gen_wall_s=1.0, eval_wall_s=1.0,
        server_started=True, load_time_s=0.1, build_info="b", fingerprint="fp-now",
        out_dir=str(tmp_path), verdicts=verdicts, tasks=tasks)


def test_an_empty_history_uses_the_file_pin_and_a_drop_in_the_subset_fails(
        tmp_path: Path) -> None:
    refs = load_references(_refs(tmp_path, PIN))
    reference = refs.for_profile("bench-x", "humaneval")
    db = tmp_path / "history.sqlite"
    row, outcome = assess(db, _session("s1"), _subset_result(tmp_path, set(HE[:6])),
                          reference, alpha=0.05)
    assert outcome.status == "pass", outcome.message
    assert (outcome.baseline_run, row["baseline_run"]) == (PIN["run_id"], PIN["run_id"])
    # the same tasks as the pin: its pass@1 is the reference (60 %, file tolerance 5 pp)
    assert (outcome.reference, outcome.delta_pp) == (60.0, 0.0)
    assert "local baseline (reference-scores.json)" in outcome.message
    _row, outcome = assess(db, _session("s2"), _subset_result(tmp_path, set(HE[:5])),
                           reference, alpha=0.05)
    assert outcome.status == "fail_tolerance", outcome.message  # 50 % < 60 - 5
    assert outcome.paired is not None
    assert outcome.paired.regressed == ("HumanEval/5",)
    _row, outcome = assess(db, _session("s3"), _subset_result(tmp_path, set()), reference,
                           alpha=0.05)
    assert outcome.paired is not None
    assert outcome.paired.p_value < 0.05  # 6 pass->fail: p = 0.031, below the tolerance too
    assert outcome.status == "fail_tolerance"


def test_other_tasks_than_the_pin_are_compared_task_by_task_only(tmp_path: Path) -> None:
    reference = load_references(_refs(tmp_path, PIN)).for_profile("bench-x", "humaneval")
    _row, outcome = assess(tmp_path / "history.sqlite", _session("s1"),
                           _subset_result(tmp_path, set(HE[:4]), n=9), reference, alpha=0.05)
    assert (outcome.status, outcome.reference, outcome.delta_pp) == ("pass", None, None)
    assert outcome.paired is not None
    assert outcome.paired.regressed == ("HumanEval/4", "HumanEval/5")


def test_a_pin_in_the_history_wins_over_the_file(tmp_path: Path) -> None:
    reference = load_references(_refs(tmp_path, PIN)).for_profile("bench-x", "humaneval")
    db = tmp_path / "history.sqlite"
    assess(db, _session("s1"), _subset_result(tmp_path, set()), reference, alpha=0.05,
           pin=True)
    _row, outcome = assess(db, _session("s2"), _subset_result(tmp_path, set()), reference,
                           alpha=0.05)
    assert outcome.status == "pass"
    assert outcome.baseline_run == "s1/hostA/bench-x/humaneval"


def test_report_baselines_prints_a_pin_in_the_file_format(tmp_path: Path) -> None:
    reference = load_references(_refs(tmp_path, PIN)).for_profile("bench-x", "humaneval")
    db = tmp_path / "history.sqlite"
    assess(db, _session("s1"), _subset_result(tmp_path, {"HumanEval/2"}), reference,
           alpha=0.05, pin=True)
    done = subprocess.run([sys.executable, "-m", "plugin", "report", "--db", str(db),
                           "--baselines"], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    (pin,) = json.loads(done.stdout)
    assert (pin["tasks"], pin["passed"], pin["partial"]) == (HE[:10], ["HumanEval/2"], True)
    again = _refs(tmp_path, {k: pin[k] for k in ("run_id", "fingerprint", "recorded",
                                                   "partial", "tasks", "passed")})
    assert load_references(again).for_profile("bench-x", "humaneval").pinned is not None
    with history.opened(db) as conn:
        assert history.baseline(conn, "bench-x", "humaneval") is not None
