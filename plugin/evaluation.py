"""Evaluation of generated programs with EvalPlus, inside a Docker sandbox (host side).

``evaluate_samples`` judges one program per task:

1. Verdicts already in ``out_dir/verdicts.jsonl`` for the same program (keyed by a hash of
   the program, the dataset and the time-limit settings) are reused: a killed run resumes.
2. Expected outputs of the canonical solutions (the "oracle") come from a trusted sandbox
   run, cached per dataset sha256, evalplus version, sandbox runtime and machine.
3. One sandbox container (``--network none``, read-only, no capabilities, user 65534)
   judges all remaining programs with a pool of workers; it writes verdicts as JSON lines to
   its stdout, which this process parses and appends to ``verdicts.jsonl`` (flushed). The
   container is removed afterwards, also on Ctrl-C; on SIGTERM by plugin.server's cleanup
   registry, and after a SIGKILL of this process by its reaper (plugin.reaper).
4. ``eval_results.json`` is written in evalplus 0.3.1's format (plugin.atomic).

Nothing produced by a container that ran generated code is unpickled here; the host reads
JSON only. Docs: docs/EVALUATION.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import platform
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

from filelock import FileLock, Timeout

from plugin import atomic, reaper, server
from plugin.datasets import PROJECT_ROOT, Dataset
from plugin.errors import DockerUnavailableError, SamplesError, SandboxError
from plugin.sandbox import protocol

log = logging.getLogger(__name__)
Events = Generator[dict[str, Any], None, None]

DEFAULT_IMAGE = "local/bench-sandbox:latest"
SANDBOXES = ("docker", "local")
LABELS = {"bench.harness": "llama-bench", "bench.role": "sandbox"}
VERDICTS_NAME = "verdicts.jsonl"
RESULTS_NAME = "eval_results.json"
MISSING = "missing"
# The runner sends a heartbeat every 10 s; this much silence means it is stuck.
STALL_TIMEOUT_S = 300.0
GIB = 1 << 30
SANDBOX_CPU_SHARES = 8192  # Docker's default is 1024
SANDBOX_DIR = Path(__file__).resolve().parent / "sandbox"
LOCAL_WARNING = (
    "sandbox='local': generated code runs as YOUR user on this machine, with your files, "
    "network and environment. This is NOT a sandbox; use it only for code you trust."
)


# --------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskVerdict:
    """EvalPlus's verdict on one task: statuses "pass" | "fail" | "timeout" | "missing"."""

    task_id: str
    base_status: str
    plus_status: str
    base_fail_tests: list[Any] = field(default_factory=list)
    plus_fail_tests: list[Any] = field(default_factory=list)
    solution_key: str = ""  # sha256 of program + dataset + limits (see solution_key())
    wall_s: float = 0.0  # time the sandbox spent judging it (base + plus checks)
    cpu_s: float = 0.0  # CPU time of the processes that ran its tests
    error: str | None = None  # why the sandbox could not judge normally (worker killed...)
    resumed: bool = False  # taken from an earlier run's verdicts.jsonl
    quarantined: bool = False  # judged again alone (see docs/EVALUATION.md)

    @property
    def base_passed(self) -> bool:
        return self.base_status == protocol.PASS

    @property
    def plus_passed(self) -> bool:
        """HumanEval+/MBPP+ pass: base AND plus tests pass (EvalPlus's definition)."""
        return self.base_passed and self.plus_status == protocol.PASS


@dataclass(frozen=True)
class EvalResult:
    """Scores of one evaluation; pass@1 are fractions in [0, 1] over all tasks."""

    dataset: str
    verdicts: Mapping[str, TaskVerdict]  # every task of the dataset, in dataset order
    base_pass_at_1: float
    plus_pass_at_1: float
    n_tasks: int
    wall_s: float
    missing: tuple[str, ...] = ()  # tasks without a solution (scored as failures)
    unknown: tuple[str, ...] = ()  # solutions for task ids not in the dataset (ignored)
    n_judged: int = 0  # judged in this call
    n_resumed: int = 0  # reused from verdicts.jsonl
    results_path: Path | None = None

    def summary(self) -> dict[str, Any]:
        """The one-line summary printed by the CLI."""
        return {
            "dataset": self.dataset, "n_tasks": self.n_tasks,
            "base_pass_at_1": round(self.base_pass_at_1, 4),
            "plus_pass_at_1": round(self.plus_pass_at_1, 4),
            "base_passed": sum(v.base_passed for v in self.verdicts.values()),
            "plus_passed": sum(v.plus_passed for v in self.verdicts.values()),
            "missing": list(self.missing), "unknown": list(self.unknown),
            "judged": self.n_judged, "resumed": self.n_resumed,
            "wall_s": round(self.wall_s, 3),
            "results": str(self.results_path) if self.results_path else None,
        }


@dataclass(frozen=True)
class Limits:
    """Per-test time limit: max(min_time_limit, gt_time_limit_factor * reference time)."""

    min_time_limit: float = protocol.DEFAULT_MIN_TIME_LIMIT
    gt_time_limit_factor: float = protocol.DEFAULT_GT_TIME_LIMIT_FACTOR


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------
def evaluate_samples(
    dataset: Dataset,
    solutions: Mapping[str, str],
    out_dir: Path,
    *,
    sandbox: str = "docker",
    image: str = DEFAULT_IMAGE,
    workers: int | None = None,
    on_verdict: Callable[[TaskVerdict], None] | None = None,
    docker_client: Any = None,
    limits: Limits | None = None,
    cache_dir: Path | None = None,
) -> EvalResult:
    """Judge ``solutions`` (task_id -> full program) on ``dataset``; see the module docstring.

    ``on_verdict`` is called once per task of the dataset: first for reused verdicts, then
    as the sandbox judges, then for missing tasks. Raises SandboxError /
    DockerUnavailableError when the sandbox cannot run; verdicts already received are kept.
    """
    started = time.perf_counter()
    limits = limits or Limits()
    if sandbox not in SANDBOXES:
        raise SandboxError(f"unknown sandbox {sandbox!r}; fix: use one of {', '.join(SANDBOXES)}")
    out_dir = Path(out_dir)
    _make_dir(out_dir, "the evaluation output directory")
    plan = _plan(dataset, solutions, limits)
    notify = on_verdict or (lambda _v: None)
    with _exclusive(out_dir):
        journal = _Journal(out_dir / VERDICTS_NAME)
        done = journal.reusable(plan)
        for verdict in done.values():
            notify(verdict)
        todo = [item for item in plan.items if item.key not in done]
        if todo:
            backend = _backend(sandbox, image, docker_client)
            workers = _worker_count(workers)
            oracle_dir = ensure_oracle(dataset, backend, workers, cache_dir)
            stream = _judge(backend, oracle_dir, todo, workers, limits, out_dir)
            with contextlib.closing(stream):
                for verdict in stream:
                    journal.append(verdict)
                    done[verdict.solution_key] = verdict
                    notify(verdict)
    verdicts = _collect(dataset, plan, done, notify)
    result = _result(dataset, plan, verdicts, time.perf_counter() - started,
                     n_judged=len(todo), out_dir=out_dir)
    write_eval_results(out_dir / RESULTS_NAME, dataset, solutions, verdicts)
    return result


# --------------------------------------------------------------------------------------
# Planning and resuming
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Item:
    key: str
    task_id: str
    solution: str


@dataclass(frozen=True)
class _Plan:
    items: tuple[_Item, ...]
    missing: tuple[str, ...]
    unknown: tuple[str, ...]


def solution_key(dataset: Dataset, task_id: str, solution: str, limits: Limits) -> str:
    """Identity of one judgement: same program, data and limits -> same verdict."""
    blob = json.dumps([dataset.sha256, protocol.EVALPLUS_VERSION, protocol.ORACLE_FORMAT,
                       limits.min_time_limit, limits.gt_time_limit_factor, task_id, solution])
    return hashlib.sha256(blob.encode()).hexdigest()


def _plan(dataset: Dataset, solutions: Mapping[str, str], limits: Limits) -> _Plan:
    unknown = tuple(t for t in solutions if t not in dataset.tasks)
    if unknown:
        log.warning("%d solutions are for tasks not in %s and are ignored: %s",
                    len(unknown), dataset.label, ", ".join(unknown[:5]))
    items = tuple(_Item(solution_key(dataset, t, solutions[t], limits), t, solutions[t])
                  for t in dataset.tasks if t in solutions)
    missing = tuple(t for t in dataset.tasks if t not in solutions)
    return _Plan(items=items, missing=missing, unknown=unknown)


class _Journal:
    """``verdicts.jsonl``: one JSON verdict per line, appended and flushed as judged."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def reusable(self, plan: _Plan) -> dict[str, TaskVerdict]:
        wanted = {item.key: item.task_id for item in plan.items}
        found: dict[str, TaskVerdict] = {}
        for record in self._records():
            key = record.get("key")
            if key in wanted and record.get("task_id") == wanted[key]:
                found[key] = _verdict_from_record(record, resumed=True)
        return found

    def _records(self) -> Iterator[dict[str, Any]]:
        if not self.path.is_file():
            return
        with self.path.open(encoding="utf-8") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill: judged again
                    continue
                if isinstance(record, dict):
                    yield record

    def append(self, verdict: TaskVerdict) -> None:
        record = {"key": verdict.solution_key, **_verdict_record(verdict)}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()


def _verdict_record(verdict: TaskVerdict) -> dict[str, Any]:
    return {
        "task_id": verdict.task_id, "base_status": verdict.base_status,
        "plus_status": verdict.plus_status, "base_fail_tests": verdict.base_fail_tests,
        "plus_fail_tests": verdict.plus_fail_tests, "wall_s": round(verdict.wall_s, 4),
        "cpu_s": round(verdict.cpu_s, 4),
        "error": verdict.error, "quarantined": verdict.quarantined,
    }


def _verdict_from_record(record: Mapping[str, Any], *, resumed: bool) -> TaskVerdict:
    base, plus = record.get("base_status"), record.get("plus_status")
    if base not in protocol.STATUSES or plus not in protocol.STATUSES:
        raise SandboxError(f"invalid statuses {base!r}/{plus!r} for {record.get('task_id')!r}")
    base_tests, plus_tests = record.get("base_fail_tests"), record.get("plus_fail_tests")
    if not isinstance(base_tests, list) or not isinstance(plus_tests, list):
        raise SandboxError(f"invalid failed-test lists for {record.get('task_id')!r}")
    error = record.get("error")
    return TaskVerdict(
        task_id=str(record["task_id"]), base_status=str(base), plus_status=str(plus),
        base_fail_tests=base_tests, plus_fail_tests=plus_tests,
        solution_key=str(record["key"]), wall_s=float(record.get("wall_s") or 0.0),
        cpu_s=float(record.get("cpu_s") or 0.0),
        error=str(error) if error else None, resumed=resumed,
        quarantined=bool(record.get("quarantined")),
    )


def _collect(dataset: Dataset, plan: _Plan, done: Mapping[str, TaskVerdict],
             notify: Callable[[TaskVerdict], None]) -> dict[str, TaskVerdict]:
    by_task = {item.task_id: done[item.key] for item in plan.items if item.key in done}
    unjudged = [item.task_id for item in plan.items if item.task_id not in by_task]
    if unjudged:  # pragma: no cover - _judge raises before this
        raise SandboxError(f"the sandbox returned no verdict for {unjudged[:5]}")
    for task_id in plan.missing:
        verdict = TaskVerdict(task_id=task_id, base_status=MISSING, plus_status=MISSING,
                              error="no solution for this task")
        by_task[task_id] = verdict
        notify(verdict)
    return {t: by_task[t] for t in dataset.tasks}


def _result(dataset: Dataset, plan: _Plan, verdicts: dict[str, TaskVerdict], wall: float,
            *, n_judged: int, out_dir: Path) -> EvalResult:
    n = len(dataset.tasks)
    base = sum(v.base_passed for v in verdicts.values())
    plus = sum(v.plus_passed for v in verdicts.values())
    return EvalResult(
        dataset=dataset.name, verdicts=MappingProxyType(verdicts),
        base_pass_at_1=base / n if n else 0.0, plus_pass_at_1=plus / n if n else 0.0,
        n_tasks=n, wall_s=wall, missing=plan.missing, unknown=plan.unknown,
        n_judged=n_judged, n_resumed=len(plan.items) - n_judged,
        results_path=out_dir / RESULTS_NAME,
    )


# --------------------------------------------------------------------------------------
# eval_results.json (evalplus 0.3.1 format)
# --------------------------------------------------------------------------------------
def write_eval_results(path: Path, dataset: Dataset, solutions: Mapping[str, str],
                       verdicts: Mapping[str, TaskVerdict]) -> None:
    """Write ``eval_results.json`` like ``evalplus.evaluate`` 0.3.1 (atomically).

    Missing tasks appear with an empty solution and status "fail" (so pass@1 computed
    from this file equals ours) and are also listed under the extra key "missing".
    """
    results: dict[str, Any] = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "hash": dataset.evalplus_hash,
        "eval": {},
        "missing": [t for t, v in verdicts.items() if v.base_status == MISSING],
    }
    for task_id, verdict in verdicts.items():
        is_missing = verdict.base_status == MISSING
        results["eval"][task_id] = [{
            "task_id": task_id,
            "solution": solutions.get(task_id, ""),
            "base_status": protocol.FAIL if is_missing else verdict.base_status,
            "plus_status": protocol.FAIL if is_missing else verdict.plus_status,
            "base_fail_tests": verdict.base_fail_tests,
            "plus_fail_tests": verdict.plus_fail_tests,
        }]
    atomic.write_text(path, json.dumps(results))


# --------------------------------------------------------------------------------------
# Samples files (EvalPlus format)
# --------------------------------------------------------------------------------------
def load_samples(path: Path, dataset: Dataset) -> dict[str, str]:
    """task_id -> program from an EvalPlus samples jsonl (``solution``, or ``completion``
    appended to the task's prompt). Raises SamplesError naming file:line."""
    solutions: dict[str, str] = {}
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SamplesError(f"cannot read samples file {path}: {exc}; fix: pass an existing "
                           "EvalPlus samples .jsonl with --samples") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        task_id, program = _parse_sample(path, number, line, dataset)
        if task_id in solutions:
            raise SamplesError(f"{path}:{number}: second sample for {task_id}; this harness "
                               "scores one sample per task (pass@1); fix: keep one per task")
        solutions[task_id] = program
    if not solutions:
        raise SamplesError(f"{path} holds no samples; fix: one JSON object per line with "
                           '"task_id" and "solution" (or "completion")')
    return solutions


def _parse_sample(path: Path, number: int, line: str, dataset: Dataset) -> tuple[str, str]:
    where = f"{path}:{number}"
    try:
        sample = json.loads(line)
    except json.JSONDecodeError as exc:
        raise SamplesError(
            f"{where}: not JSON ({exc.msg}); fix: one JSON object per line") from None
    if not isinstance(sample, dict) or not isinstance(sample.get("task_id"), str):
        raise SamplesError(f'{where}: expected an object with a string "task_id"')
    task_id = sample["task_id"]
    if isinstance(sample.get("solution"), str):
        return task_id, sample["solution"]
    if isinstance(sample.get("completion"), str):
        task = dataset.tasks.get(task_id)
        if task is None:
            raise SamplesError(f"{where}: {task_id} is not a task of {dataset.label}, so its "
                               '"completion" has no prompt; fix: check --dataset')
        return task_id, task.prompt + sample["completion"]
    raise SamplesError(f'{where}: {task_id} has neither a string "solution" nor '
                       '"completion"; fix: add one (EvalPlus samples format)')


# --------------------------------------------------------------------------------------
# Oracle (expected outputs): trusted run, cached on the host
# --------------------------------------------------------------------------------------
def cache_root() -> Path:
    """``$BENCH_CACHE_DIR`` or ``$XDG_CACHE_HOME/llama-bench`` (default ``~/.cache/...``)."""
    explicit = os.environ.get("BENCH_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llama-bench"


def machine_fingerprint() -> dict[str, Any]:
    """What reference times depend on besides the runtime: CPU model and count."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"machine": platform.machine(), "cpu": model or platform.processor(),
            "cpus": os.cpu_count(), "node": platform.node()}


def ensure_oracle(dataset: Dataset, backend: _Backend, workers: int,
                  cache_dir: Path | None = None) -> Path:
    """Directory with the expected outputs for ``dataset``: cached, or computed now."""
    fingerprint = {
        "dataset_sha256": dataset.sha256, "evalplus": protocol.EVALPLUS_VERSION,
        "format": protocol.ORACLE_FORMAT, "runtime": backend.runtime_id(),
        "machine": machine_fingerprint(),
    }
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()
    root = (cache_dir or cache_root()) / "oracles"
    _make_dir(root, "the oracle cache (set BENCH_CACHE_DIR)")
    variant = "-mini" if dataset.mini else ""
    target = root / f"{dataset.name}-{dataset.version}{variant}-{digest[:16]}"
    with FileLock(str(target) + ".lock"):
        if _oracle_complete(target, dataset):
            return target
        _build_oracle(dataset, backend, workers, root, target, fingerprint)
    return target


def _oracle_complete(target: Path, dataset: Dataset) -> bool:
    try:
        manifest = json.loads((target / protocol.MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False
    ids = [t.get("task_id") for t in manifest.get("tasks", [])]
    return manifest.get("format") == protocol.ORACLE_FORMAT and set(dataset.tasks) <= set(ids)


def _build_oracle(dataset: Dataset, backend: _Backend, workers: int, root: Path,
                  target: Path, fingerprint: Mapping[str, Any]) -> None:
    log.info("computing expected outputs of %s (trusted sandbox run)", dataset.label)
    work = Path(tempfile.mkdtemp(prefix=target.name + ".", suffix=".tmp", dir=root))
    try:
        (work / protocol.TASKS_DIRNAME).mkdir()
        for directory in (work, work / protocol.TASKS_DIRNAME):
            directory.chmod(0o777)  # the sandbox user (65534) writes here
        events = backend.run_oracle(dataset.path, dataset.name, work, workers)
        _expect_done(events, "trusted oracle run")
        if not _oracle_complete(work, dataset):
            raise SandboxError(f"the trusted oracle run left no complete manifest in {work}")
        (work / "fingerprint.json").write_text(json.dumps(fingerprint, indent=1))
        for directory in (work, work / protocol.TASKS_DIRNAME):
            directory.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _expect_done(events: Iterable[dict[str, Any]], what: str) -> None:
    for event in events:
        if event.get("event") == "job_error":
            raise SandboxError(f"{what}: {event.get('task_id')}: {event.get('error')}")
    # run_* raise on fatal events and abnormal exits


# --------------------------------------------------------------------------------------
# Judging
# --------------------------------------------------------------------------------------
def _judge(backend: _Backend, oracle_dir: Path, todo: list[_Item], workers: int,
           limits: Limits, out_dir: Path) -> Generator[TaskVerdict, None, None]:
    by_key = {item.key: item for item in todo}
    pending = dict(by_key)
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-eval-") as tmp:
        solutions_file = Path(tmp) / "solutions.jsonl"
        with solutions_file.open("w", encoding="utf-8") as handle:
            for item in todo:
                handle.write(json.dumps({"key": item.key, "task_id": item.task_id,
                                         "solution": item.solution}) + "\n")
        solutions_file.chmod(0o644)
        Path(tmp).chmod(0o755)
        events = backend.run_evaluation(oracle_dir, solutions_file, workers, limits)
        with contextlib.closing(events):
            for event in events:
                kind = event.get("event")
                if kind == "job_error":
                    errors.append(f"{event.get('task_id')}: {event.get('error')}")
                elif kind == "verdict":
                    verdict = _accept(event, pending)
                    if verdict is not None:
                        yield verdict
    if errors or pending:
        left = ", ".join(sorted({i.task_id for i in pending.values()})[:8])
        raise SandboxError(
            f"the sandbox judged {len(todo) - len(pending)} of {len(todo)} solutions"
            + (f"; errors: {'; '.join(errors[:5])}" if errors else "")
            + (f"; unjudged: {left}" if left else "")
            + f". Verdicts so far are kept in {out_dir / VERDICTS_NAME}; fix the cause and "
            "run again to judge the rest"
        )


def _accept(event: Mapping[str, Any], pending: dict[str, _Item]) -> TaskVerdict | None:
    """A verdict line from the sandbox, validated as data; None if unexpected."""
    item = pending.get(str(event.get("key")))
    if item is None or event.get("task_id") != item.task_id:
        log.warning("ignoring an unexpected verdict line from the sandbox: %.200s", event)
        return None
    verdict = _verdict_from_record(event, resumed=False)
    del pending[item.key]
    return verdict


def _worker_count(workers: int | None) -> int:
    if workers is None:
        return max(1, os.cpu_count() or 1)
    if workers < 1:
        raise SandboxError(f"workers must be >= 1 (got {workers}); fix: --workers 1 or more")
    return workers


# --------------------------------------------------------------------------------------
# Backends: one Docker container per run, or a local subprocess
# --------------------------------------------------------------------------------------
class _Backend(Protocol):
    def runtime_id(self) -> str: ...

    def run_oracle(self, dataset_file: Path, dataset_name: str, out_dir: Path,
                   workers: int) -> Events: ...

    def run_evaluation(self, oracle_dir: Path, solutions_file: Path, workers: int,
                       limits: Limits) -> Events: ...


def _backend(sandbox: str, image: str, docker_client: Any) -> _Backend:
    if sandbox == "local":
        return LocalSandbox()
    return DockerSandbox(image, docker_client)


def _oracle_args(dataset_file: str, dataset_name: str, out_dir: str, workers: int) -> list[str]:
    return ["oracle", "--dataset", dataset_file, "--dataset-name", dataset_name,
            "--out", out_dir, "--workers", str(workers)]


def _evaluate_args(oracle_dir: str, solutions: str, workers: int, limits: Limits) -> list[str]:
    return ["evaluate", "--oracle", oracle_dir, "--solutions", solutions,
            "--workers", str(workers), "--min-time-limit", str(limits.min_time_limit),
            "--gt-time-limit-factor", str(limits.gt_time_limit_factor)]


class DockerSandbox:
    """Runs the runner in one hardened container per call; always removes it."""

    def __init__(self, image: str = DEFAULT_IMAGE, client: Any = None) -> None:
        self.client = client if client is not None else docker_client_from_env()
        self.image_name = image
        self.image = _find_image(self.client, image)

    def runtime_id(self) -> str:
        return f"docker:{self.image.id}"

    def run_oracle(self, dataset_file: Path, dataset_name: str, out_dir: Path,
                   workers: int) -> Events:
        volumes = {
            str(dataset_file.resolve()): {"bind": protocol.DATASET_MOUNT, "mode": "ro"},
            str(out_dir.resolve()): {"bind": protocol.OUT_MOUNT, "mode": "rw"},
        }
        args = _oracle_args(protocol.DATASET_MOUNT, dataset_name, protocol.OUT_MOUNT, workers)
        return self._run(args, volumes, workers, purpose="oracle")

    def run_evaluation(self, oracle_dir: Path, solutions_file: Path, workers: int,
                       limits: Limits) -> Events:
        volumes = {
            str(oracle_dir.resolve()): {"bind": protocol.ORACLE_MOUNT, "mode": "ro"},
            str(solutions_file.resolve()): {"bind": protocol.SOLUTIONS_MOUNT, "mode": "ro"},
        }
        args = _evaluate_args(protocol.ORACLE_MOUNT, protocol.SOLUTIONS_MOUNT, workers, limits)
        return self._run(args, volumes, workers, purpose="evaluate")

    def _run(self, args: list[str], volumes: dict[str, dict[str, str]], workers: int,
             purpose: str) -> Events:
        volumes = {str(SANDBOX_DIR): {"bind": protocol.RUNNER_MOUNT, "mode": "ro"}, **volumes}
        spec = sandbox_container_spec(self.image_name, args, volumes, workers, purpose)
        docker_errors = importlib.import_module("docker.errors")
        what = f"sandbox container ({purpose}, image {self.image_name})"
        reaper.watch(self.client)  # removes the container if this process is killed
        try:
            container = self.client.containers.create(**spec)
        except docker_errors.DockerException as exc:
            raise SandboxError(f"cannot create the {what}: {exc}") from exc
        server.register_cleanup(self.client, container.id, container.name)  # SIGTERM, exit
        try:
            container.start()
            chunks = container.logs(stream=True, follow=True, stdout=True, stderr=False)
            yield from _events(chunks, what=what)
            status = container.wait(timeout=60)
            code = int(status.get("StatusCode", -1))
            if code != 0:
                tail = container.logs(stdout=False, stderr=True, tail=30).decode(errors="replace")
                raise SandboxError(f"{what} exited with {code}: {tail}")
        except (docker_errors.DockerException, OSError) as exc:  # requests errors are OSErrors
            raise SandboxError(f"Docker failed running the {what}: {exc}") from exc
        finally:
            with contextlib.suppress(Exception):
                container.remove(force=True)
                server.unregister_cleanup(container.id)


def sandbox_container_spec(image: str, args: list[str], volumes: dict[str, dict[str, str]],
                           workers: int, purpose: str) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for a sandbox container (kept pure)."""
    from docker.types import Ulimit

    cpus = min(workers, os.cpu_count() or 1)
    memory = _memory_limit(workers)
    return {
        "image": image,
        "command": ["python3", "-m", protocol.RUNNER_PACKAGE, *args],
        "user": "65534:65534",
        "network_mode": "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=512m,mode=1777"},
        "pids_limit": 128 + 64 * workers,
        "mem_limit": memory,
        "memswap_limit": memory,
        "nano_cpus": int(cpus * 1e9),
        # Per-test limits are wall-clock: a sandbox starved by busy sibling containers (e.g.
        # llama-servers whose threads spin) times out correct code. Weigh it above them.
        "cpu_shares": SANDBOX_CPU_SHARES,
        "ulimits": [Ulimit(name="core", soft=0, hard=0)],
        "environment": {
            "PYTHONPATH": f"/opt/evalplus:{Path(protocol.RUNNER_MOUNT).parent}",
            "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        },
        "volumes": volumes,
        "working_dir": "/tmp",
        "labels": {**LABELS, "bench.purpose": purpose, "bench.run": uuid.uuid4().hex,
                   "bench.pid": str(os.getpid()),  # kept for reap_sandbox_containers
                   server.LABEL_OWNER_PID: str(os.getpid()),
                   server.LABEL_OWNER_HOST: socket.gethostname()},
        "detach": True,
    }


def _memory_limit(workers: int) -> int:
    """EvalPlus caps each test process at 4 GiB (RLIMIT_AS); leave room for that per worker,
    but never more than 3/4 of this machine's memory."""
    wanted = workers * 4 * GIB + 2 * GIB
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return wanted
    return int(min(wanted, max(2 * GIB, total * 3 // 4)))


def docker_client_from_env() -> Any:
    """A docker SDK client, or DockerUnavailableError saying how to fix it."""
    docker = importlib.import_module("docker")
    where = os.environ.get("DOCKER_HOST") or "the local socket (unix:///var/run/docker.sock)"
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        raise DockerUnavailableError(
            f"cannot reach the Docker engine at {where} ({type(exc).__name__}: {exc}); fix: "
            "start it (e.g. 'nohup dockerd >/var/log/dockerd.log 2>&1 &') or set DOCKER_HOST; "
            "without Docker use --sandbox local (NOT a sandbox: runs generated code as you)"
        ) from exc
    return client


def _find_image(client: Any, image: str) -> Any:
    import docker.errors

    try:
        return client.images.get(image)
    except docker.errors.ImageNotFound:
        raise SandboxError(
            f"sandbox image {image!r} is not in the Docker engine; fix: build it with "
            "'docker/sandbox/build-debian.sh' (no registry needed; SANDBOX_IMAGE sets the name) "
            f"or 'docker build -t {image} docker/sandbox'"
        ) from None
    except docker.errors.APIError as exc:
        raise DockerUnavailableError(f"Docker engine error looking up {image!r}: {exc}") from exc


def reap_sandbox_containers(client: Any = None, *, only_orphans: bool = True) -> int:
    """Remove sandbox containers left by killed runs (e.g. pytest-timeout's thread method).

    With ``only_orphans`` only containers of this host whose creating process (label
    ``bench.pid``) is gone are removed, so concurrent runs (xdist workers, other hosts
    sharing the engine) keep theirs.
    """
    client = client if client is not None else docker_client_from_env()
    filters = {"label": [f"{k}={v}" for k, v in LABELS.items()]}
    removed = 0
    host = socket.gethostname()
    for container in client.containers.list(all=True, filters=filters):
        pid = container.labels.get("bench.pid", "")
        if only_orphans and container.labels.get(server.LABEL_OWNER_HOST, host) != host:
            continue
        if only_orphans and pid.isdigit() and _pid_alive(int(pid)):
            continue
        with contextlib.suppress(Exception):
            container.remove(force=True)
            removed += 1
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalSandbox:
    """The same runner as a local subprocess: NO isolation (for machines without Docker)."""

    def __init__(self) -> None:
        log.warning(LOCAL_WARNING)
        print(f"WARNING: {LOCAL_WARNING}", file=sys.stderr)

    def runtime_id(self) -> str:
        from plugin.sandbox.compat import evalplus_version

        return f"local:{sys.executable}:{platform.python_version()}:{evalplus_version()}"

    def run_oracle(self, dataset_file: Path, dataset_name: str, out_dir: Path,
                   workers: int) -> Events:
        args = _oracle_args(str(dataset_file), dataset_name, str(out_dir), workers)
        return self._run(args, purpose="oracle")

    def run_evaluation(self, oracle_dir: Path, solutions_file: Path, workers: int,
                       limits: Limits) -> Events:
        args = _evaluate_args(str(oracle_dir), str(solutions_file), workers, limits)
        return self._run(args, purpose="evaluate")

    def _run(self, args: list[str], purpose: str) -> Events:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
        env.update({"PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1",
                    "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        with tempfile.TemporaryFile() as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "plugin.sandbox", *args], cwd=tempfile.gettempdir(),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env,
                start_new_session=True,
            )
            try:
                stdout: Any = proc.stdout
                yield from _events(iter(lambda: stdout.read1(65536), b""),
                                   what=f"local runner ({purpose})")
                code = proc.wait(timeout=60)
                if code != 0:
                    stderr.seek(0)
                    tail = stderr.read()[-4000:].decode(errors="replace")
                    raise SandboxError(f"local runner ({purpose}) exited with {code}: {tail}")
            finally:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# --------------------------------------------------------------------------------------
# The runner's event stream
# --------------------------------------------------------------------------------------
def _events(chunks: Iterable[bytes], *, what: str,
            stall_timeout: float = STALL_TIMEOUT_S) -> Iterator[dict[str, Any]]:
    """JSON events from a byte stream, read in a thread so silence can be detected."""
    lines: queue.Queue[bytes | BaseException | None] = queue.Queue()
    thread = threading.Thread(target=_pump, args=(chunks, lines), daemon=True)
    thread.start()
    while True:
        try:
            line = lines.get(timeout=stall_timeout)
        except queue.Empty:
            raise SandboxError(f"{what} sent nothing for {stall_timeout:.0f} s (its "
                               "heartbeat comes every 10 s); it was stopped") from None
        if line is None:
            return
        if isinstance(line, BaseException):
            raise SandboxError(f"{what}: lost its output stream ({line})") from line
        event = _parse_event(line, what)
        if event is not None:
            yield event


def _pump(chunks: Iterable[bytes], lines: queue.Queue[bytes | BaseException | None]) -> None:
    buffer = b""
    try:
        for chunk in chunks:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                lines.put(line)
        if buffer.strip():
            lines.put(buffer)
    except BaseException as exc:  # handed to the consumer thread
        lines.put(exc)
        return
    lines.put(None)


def _parse_event(line: bytes, what: str) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s: ignoring a non-JSON output line: %.200r", what, line)
        return None
    if not isinstance(event, dict):
        return None
    if event.get("event") == "fatal":
        raise SandboxError(f"{what} failed: {event.get('error')}")
    if event.get("event") == "hello":
        log.info("%s: %s", what, event)
    return event


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------
def _make_dir(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SandboxError(f"cannot create {what} {path}: {exc}; fix: choose a writable "
                           "directory") from exc


@contextlib.contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    lock = FileLock(str(out_dir / ".evaluation.lock"))
    try:
        lock.acquire(timeout=5)
    except Timeout:
        raise SandboxError(f"another evaluation is writing to {out_dir}; fix: wait for it or "
                           "use another output directory (--out)") from None
    try:
        yield
    finally:
        lock.release()
