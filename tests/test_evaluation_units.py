"""plugin.evaluation without Docker: journal/resume, missing tasks, result files, samples
parsing, container spec, CLI errors, the find_zero fix, and the local runner end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from plugin.datasets import Dataset, load_dataset
from plugin.errors import SamplesError, SandboxError
from plugin.evaluation import judging
from plugin.evaluation.backends import sandbox_container_spec
from plugin.evaluation.judging import evaluate_samples
from plugin.evaluation.plan import Limits
from plugin.evaluation.results import TaskVerdict
from plugin.evaluation.samples import load_samples

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def humaneval() -> Dataset:
    return load_dataset("humaneval")


def _subset(data: Dataset, n: int) -> Dataset:
    ids = list(data.tasks)[:n]
    return replace(data, tasks={t: data.tasks[t] for t in ids})


class FakeBackend:
    """Judges without a sandbox: a program containing "WRONG" fails, others pass.

    ``stop_after`` simulates a run killed after that many verdicts.
    """

    def __init__(self, stop_after: int | None = None) -> None:
        self.stop_after = stop_after
        self.judged: list[str] = []

    def runtime_id(self) -> str:
        return "fake"

    def run_oracle(self, dataset_file: Path, dataset_name: str, out_dir: Path,
                   workers: int) -> Iterator[dict[str, Any]]:
        tasks = [{"task_id": t.task_id} for t in load_dataset(dataset_name).tasks.values()]
        (out_dir / "oracle.json").write_text(json.dumps({"format": 1, "tasks": tasks}))
        yield {"event": "done"}

    def run_evaluation(self, oracle_dir: Path, solutions_file: Path, workers: int,
                       limits: Limits) -> Iterator[dict[str, Any]]:
        for number, line in enumerate(solutions_file.read_text().splitlines()):
            if self.stop_after is not None and number >= self.stop_after:
                raise KeyboardInterrupt
            item = json.loads(line)
            self.judged.append(item["task_id"])
            status = "fail" if "WRONG" in item["solution"] else "pass"
            yield {"event": "verdict", "key": item["key"], "task_id": item["task_id"],
                   "base_status": status, "plus_status": status,
                   "base_fail_tests": [[1]] if status == "fail" else [],
                   "plus_fail_tests": [], "wall_s": 0.01}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeBackend:
    backend = FakeBackend()
    monkeypatch.setattr(judging, "make_backend", lambda *_a: backend)
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    return backend


def _canonical(data: Dataset) -> dict[str, str]:
    return {t: task.canonical_program for t, task in data.tasks.items()}


def test_missing_tasks_are_failures_and_reported(fake: FakeBackend, humaneval: Dataset,
                                                 tmp_path: Path) -> None:
    data = _subset(humaneval, 4)
    solutions = _canonical(data)
    del solutions["HumanEval/2"]
    solutions["HumanEval/3"] = "WRONG"
    solutions["HumanEval/999"] = "not a task"
    seen: list[TaskVerdict] = []
    result = evaluate_samples(data, solutions, tmp_path / "out", on_verdict=seen.append)
    assert result.missing == ("HumanEval/2",)
    assert result.unknown == ("HumanEval/999",)
    assert result.verdicts["HumanEval/2"].base_status == "missing"
    assert not result.verdicts["HumanEval/2"].plus_passed
    assert result.n_tasks == 4
    assert result.base_pass_at_1 == pytest.approx(0.5)
    assert result.plus_pass_at_1 == pytest.approx(0.5)
    assert list(result.verdicts) == list(data.tasks)
    assert sorted(v.task_id for v in seen) == sorted(data.tasks)
    assert "HumanEval/999" not in fake.judged
    summary = result.summary()
    assert summary["missing"] == ["HumanEval/2"]
    assert {"base_pass_at_1", "plus_pass_at_1", "n_tasks", "wall_s"} <= set(summary)


def test_eval_results_json_has_evalplus_shape(fake: FakeBackend, humaneval: Dataset,
                                              tmp_path: Path) -> None:
    data = _subset(humaneval, 3)
    solutions = _canonical(data)
    solutions["HumanEval/1"] = "WRONG"
    del solutions["HumanEval/2"]
    evaluate_samples(data, solutions, tmp_path / "out")
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert results["hash"] == humaneval.evalplus_hash
    assert set(results) >= {"date", "hash", "eval"}
    assert list(results["eval"]) == list(data.tasks)
    for task_id, entries in results["eval"].items():
        assert len(entries) == 1
        assert set(entries[0]) == {"task_id", "solution", "base_status", "plus_status",
                                   "base_fail_tests", "plus_fail_tests"}
        assert entries[0]["task_id"] == task_id
    assert results["eval"]["HumanEval/1"][0]["base_status"] == "fail"
    assert results["eval"]["HumanEval/1"][0]["base_fail_tests"] == [[1]]
    assert results["eval"]["HumanEval/2"][0]["base_status"] == "fail"  # missing
    assert results["missing"] == ["HumanEval/2"]
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_killed_run_keeps_verdicts_and_resumes(monkeypatch: pytest.MonkeyPatch,
                                               humaneval: Dataset, tmp_path: Path) -> None:
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    data = _subset(humaneval, 5)
    solutions = _canonical(data)
    killed = FakeBackend(stop_after=2)
    monkeypatch.setattr(judging, "make_backend", lambda *_a: killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate_samples(data, solutions, tmp_path / "out")
    journal = (tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()
    assert len(journal) == 2  # judged before the kill, already on disk

    again = FakeBackend()
    monkeypatch.setattr(judging, "make_backend", lambda *_a: again)
    result = evaluate_samples(data, solutions, tmp_path / "out")
    assert again.judged == list(data.tasks)[2:]
    assert result.n_resumed == 2
    assert result.n_judged == 3
    assert sum(v.resumed for v in result.verdicts.values()) == 2

    changed = dict(solutions, **{"HumanEval/0": "WRONG"})
    third = FakeBackend()
    monkeypatch.setattr(judging, "make_backend", lambda *_a: third)
    result = evaluate_samples(data, changed, tmp_path / "out")
    assert third.judged == ["HumanEval/0"]
    assert result.verdicts["HumanEval/0"].base_status == "fail"


def test_changed_limits_are_judged_again(fake: FakeBackend, humaneval: Dataset,
                                         tmp_path: Path) -> None:
    data = _subset(humaneval, 2)
    evaluate_samples(data, _canonical(data), tmp_path / "out")
    fake.judged.clear()
    evaluate_samples(data, _canonical(data), tmp_path / "out", limits=Limits(8.0, 4.0))
    assert fake.judged == list(data.tasks)


def test_truncated_journal_line_is_ignored(fake: FakeBackend, humaneval: Dataset,
                                           tmp_path: Path) -> None:
    data = _subset(humaneval, 2)
    evaluate_samples(data, _canonical(data), tmp_path / "out")
    journal = tmp_path / "out" / "verdicts.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])
    fake.judged.clear()
    result = evaluate_samples(data, _canonical(data), tmp_path / "out")
    assert fake.judged == ["HumanEval/1"]
    assert result.n_resumed == 1


def test_unjudged_solutions_raise_and_keep_the_rest(monkeypatch: pytest.MonkeyPatch,
                                                    humaneval: Dataset,
                                                    tmp_path: Path) -> None:
    class Forgetful(FakeBackend):
        def run_evaluation(self, *args: Any) -> Iterator[dict[str, Any]]:
            yield from list(super().run_evaluation(*args))[:1]

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(judging, "make_backend", lambda *_a: Forgetful())
    data = _subset(humaneval, 3)
    with pytest.raises(SandboxError, match=r"judged 1 of 3 .*unjudged: HumanEval/1"):
        evaluate_samples(data, _canonical(data), tmp_path / "out")
    assert len((tmp_path / "out" / "verdicts.jsonl").read_text().splitlines()) == 1


def test_bad_sandbox_name(humaneval: Dataset, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="one of docker, local"):
        evaluate_samples(humaneval, {}, tmp_path, sandbox="podman")


# ------------------------------------------------------------------------- samples files
def test_load_samples_solution_and_completion(humaneval: Dataset, tmp_path: Path) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text(json.dumps({"task_id": "HumanEval/0", "solution": "def f(): pass"}) + "\n\n"
                    + json.dumps({"task_id": "HumanEval/1", "completion": "    return []\n"})
                    + "\n")
    solutions = load_samples(path, humaneval)
    assert solutions["HumanEval/0"] == "def f(): pass"
    assert solutions["HumanEval/1"] == humaneval.tasks["HumanEval/1"].prompt + "    return []\n"


@pytest.mark.parametrize(("content", "message"), [
    ('{"task_id": "HumanEval/0", "solution": "x"}\nnot json\n', r"samples\.jsonl:2: not JSON"),
    ('{"solution": "x"}\n', r"samples\.jsonl:1: expected an object"),
    ('{"task_id": "HumanEval/0"}\n', r':1: HumanEval/0 has neither a string "solution"'),
    ('{"task_id": "HumanEval/0", "solution": "a"}\n{"task_id": "HumanEval/0", '
     '"solution": "b"}\n', r":2: second sample for HumanEval/0"),
    ('{"task_id": "Nope/1", "completion": "x"}\n', r":1: Nope/1 is not a task"),
    ("\n", r"holds no samples"),
])
def test_load_samples_errors_name_file_and_line(humaneval: Dataset, tmp_path: Path,
                                                content: str, message: str) -> None:
    path = tmp_path / "samples.jsonl"
    path.write_text(content)
    with pytest.raises(SamplesError, match=message):
        load_samples(path, humaneval)


# ---------------------------------------------------------------------- container spec
def test_container_spec_is_locked_down() -> None:
    spec = sandbox_container_spec("img", ["evaluate"], {}, workers=2,
                                             purpose="evaluate")
    assert spec["network_mode"] == "none"
    assert spec["user"] == "65534:65534"
    assert spec["cap_drop"] == ["ALL"]
    assert spec["security_opt"] == ["no-new-privileges"]
    assert spec["read_only"] is True
    assert "/tmp" in spec["tmpfs"]
    assert spec["pids_limit"] > 0
    assert spec["mem_limit"] == spec["memswap_limit"]
    assert spec["mem_limit"] > 0
    assert spec["nano_cpus"] > 0
    assert spec["cpu_shares"] > 1024
    assert spec["labels"]["bench.harness"] == "llama-bench"
    assert spec["labels"]["bench.role"] == "sandbox"
    assert spec["command"][:3] == ["python3", "-m", "bench_sandbox"]
    assert not any(k for k in spec["environment"] if "SECRET" in k or "TOKEN" in k)


# ----------------------------------------------------------------------------- the CLI
def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "plugin", *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **(env or {})},
                          timeout=120, check=False)


def _assert_clean_error(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    for needle in needles:
        assert needle in done.stderr


def test_cli_missing_samples_file(tmp_path: Path) -> None:
    done = _cli("evaluate", "--dataset", "humaneval", "--samples", str(tmp_path / "no.jsonl"))
    _assert_clean_error(done, "--samples", "no such file")


def test_cli_bad_samples_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{oops\n")
    done = _cli("evaluate", "--dataset", "humaneval", "--samples", str(bad))
    _assert_clean_error(done, f"{bad}:1: not JSON", "fix:")


def test_cli_unreachable_docker(tmp_path: Path) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "solution": "x"}\n')
    done = _cli("evaluate", "--dataset", "humaneval", "--samples", str(samples),
                env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"})
    _assert_clean_error(done, "cannot reach the Docker engine", "DOCKER_HOST",
                        "--sandbox local")


def test_cli_unwritable_out(tmp_path: Path) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "solution": "x"}\n')
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = _cli("evaluate", "--dataset", "humaneval", "--samples", str(samples),
                "--out", str(blocker / "sub"))
    _assert_clean_error(done, "--out")


def test_cli_help_lists_evaluate() -> None:
    done = _cli("--help")
    assert done.returncode == 0
    assert "evaluate" in done.stdout


# ---------------------------------------------------------------- the find_zero fix
FIND_ZERO_CHECK = textwrap.dedent("""
    import json, sys
    from plugin.datasets import load_dataset, iter_records
    import gzip
    from evalplus.gen.util import trusted_exec
    import evalplus.eval as checker
    from plugin.sandbox import compat

    data = load_dataset("humaneval", mini=True)
    record = next(r for r in iter_records(gzip.decompress(data.path.read_bytes()))
                  if r["task_id"] == "HumanEval/32")
    code = record["prompt"] + record["canonical_solution"]
    wrong = record["prompt"] + "    return 0.0\\n"
    inputs = record["base_input"]
    expected, times = trusted_exec(code, inputs, "find_zero", record_time=True)

    def check(program):
        return checker.untrusted_check("humaneval", program, inputs, "find_zero",
                                       expected=expected, atol=record["atol"],
                                       ref_time=times, fast_check=True)[0]

    before = check(code)
    assert compat.patch_find_zero(checker) == "patched"
    assert compat.patch_find_zero(checker) == "not-needed"
    print(json.dumps({"before": before, "after": check(code), "wrong": check(wrong)}))
""")


def test_find_zero_fix_makes_the_canonical_solution_pass() -> None:
    done = subprocess.run([sys.executable, "-c", FIND_ZERO_CHECK], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {"before": "fail", "after": "pass", "wrong": "fail"}


# ------------------------------------------------------------- local runner end to end
def test_local_runner_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The same runner as in the container, as a subprocess (sandbox='local')."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    data = load_dataset("humaneval", mini=True)
    small = _subset(data, 8)
    solutions = _canonical(small)
    solutions["HumanEval/1"] = "def separate_paren_groups(s):\n    return []\n"
    solutions["HumanEval/2"] = "def truncate_number(x):\n    raise ValueError\n"
    solutions["HumanEval/3"] = "def below_zero(ops:\n"
    result = evaluate_samples(small, solutions, tmp_path / "out", sandbox="local", workers=2)
    assert "NOT a sandbox" in capsys.readouterr().err
    statuses = {t: (v.base_status, v.plus_status) for t, v in result.verdicts.items()}
    for task_id in ("HumanEval/1", "HumanEval/2", "HumanEval/3"):
        assert statuses.pop(task_id) == ("fail", "fail")
    assert set(statuses.values()) == {("pass", "pass")}


# ------------------------------------------------------------------- the worker pool
STOPPED_WORKER = textwrap.dedent("""\
    import json, os, signal, time
    from plugin.sandbox.pool import WorkerPool

    def work(job):
        if job == 0:  # what kill(-1, SIGSTOP) from judged code does to a worker
            os.kill(os.getpid(), signal.SIGSTOP)
        return {"job": job}

    pool = WorkerPool(2, work, setup=lambda slot: None, deadline_s=lambda job: 600.0)
    for job in range(6):
        pool.submit(job)
    started, outcomes = time.monotonic(), {}
    try:
        for outcome in pool.run():
            outcomes[outcome.job] = [outcome.kind, outcome.reason]
    finally:
        pool.close()
    print(json.dumps({"elapsed": time.monotonic() - started, "outcomes": outcomes}))
""")


def test_a_stopped_worker_is_replaced_at_once() -> None:
    """A worker stopped by a signal counts as died within a second or two, instead of
    holding its job until the job deadline (600 s here); the other jobs are done. (In a
    subprocess: the pool kills every other child of the process it runs in.)"""
    done = subprocess.run([sys.executable, "-c", STOPPED_WORKER], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["elapsed"] < 30
    assert report["outcomes"]["0"] == ["died", "worker process was stopped by a signal and killed"]
    assert {job: kind for job, (kind, _) in report["outcomes"].items() if job != "0"} == {
        str(job): "done" for job in range(1, 6)}
