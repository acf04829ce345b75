"""Judge generated solutions with EvalPlus's own checker, in a pool of persistent workers.

Per solution a worker calls ``evalplus.eval.untrusted_check`` twice (base, then plus tests)
with ``fast_check=True``, exactly as ``evalplus.evaluate`` does by default; the only change
to EvalPlus's logic is the upstream find_zero fix (see compat.py). ``untrusted_check`` forks
a child per call; the worker itself is forked once, so no interpreter starts per sample and
the expected outputs are read from the cached oracle files.

Containment of cross-talk between concurrently judged solutions: a run that left processes
behind, used more than one CPU, or killed its worker is "disruptive"; any solution that
failed while a disruptive one was running is judged again alone at the end.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import time
from collections.abc import Callable
from typing import Any

from . import compat, hardening, pool, protocol, runtime
from .clock import Clock
from .pool import Outcome, WorkerPool

# A job is two untrusted_check calls, each bounded by its task timeout + 2 s; plus this.
JOB_SLACK_S = 60.0
# A solution leaving this much in its scratch directory may have starved the shared tmpfs.
SCRATCH_BYTES_DISRUPTIVE = 64 << 20


class Settings:
    def __init__(self, oracle_dir: str, solutions_path: str, workers: int,
                 min_time_limit: float, factor: float, *, policy: str = protocol.HARNESS,
                 load_scaling: bool = True,
                 memory_budget: int = protocol.MEMORY_BUDGET_BYTES) -> None:
        self.oracle_dir = oracle_dir
        self.solutions_path = solutions_path
        self.workers = workers
        self.min_time_limit = min_time_limit
        self.factor = factor
        self.policy = policy
        self.load_scaling = load_scaling
        self.memory_budget = memory_budget

    def other_policy(self, scale: float) -> tuple[str, float, float]:
        """(name, min_time_limit, factor) of the policy verdicts are compared with."""
        name = protocol.HARNESS if self.policy == protocol.EVALPLUS else protocol.EVALPLUS
        minimum, factor, scaling = protocol.POLICIES[name]
        return name, minimum, factor * (scale if scaling else 1.0)


def run(settings: Settings) -> int:
    manifest = _load_json(os.path.join(settings.oracle_dir, protocol.MANIFEST_NAME))
    dataset = str(manifest["dataset"])
    by_task = {t["task_id"]: t for t in manifest["tasks"]}
    solutions = _load_solutions(settings.solutions_path)
    unknown = [s["task_id"] for s in solutions if s["task_id"] not in by_task]
    if unknown:
        runtime.emit("fatal", error=f"solutions for tasks not in the oracle: {unknown[:5]}")
        return 2
    probe = runtime.calibration_probe()
    measured = min(protocol.MAX_LOAD_SCALE, max(1.0, probe / float(manifest["probe_s"])))
    scale = measured if settings.load_scaling else 1.0
    factor = settings.factor * scale
    checker = _prepare_checker()
    runtime.emit("hello", mode="evaluate", dataset=dataset, solutions=len(solutions),
                 workers=settings.workers, min_time_limit=settings.min_time_limit,
                 gt_time_limit_factor=factor, load_scale=scale, probe_s=probe,
                 policy=settings.policy, memory_budget=settings.memory_budget,
                 oracle_probe_s=manifest["probe_s"], **runtime.describe_runtime())
    judge = _make_judge(settings, dataset, by_task, solutions, checker, factor, measured)
    costs = [_cost(by_task[s["task_id"]]) for s in solutions]
    raise_cap = settings.policy != protocol.EVALPLUS
    deadlines = [_job_deadline(by_task[s["task_id"]], factor, raise_cap) for s in solutions]
    return _schedule(settings.workers, judge, solutions, costs, deadlines)


def _prepare_checker() -> Any:
    import multiprocessing

    # Python 3.14 defaults to forkserver: every untrusted_check would then pickle all test
    # inputs to a server process. fork is what EvalPlus was written for and is much cheaper.
    multiprocessing.set_start_method("fork", force=True)
    checker: Any = compat.load_checker()
    original = checker.unsafe_execute

    def unsafe_execute(*args: Any, **kwargs: Any) -> Any:
        # Runs in the forked child, before any untrusted code: a process group of its own
        # (so the worker can kill all it spawns at once) and no access to the result pipe.
        os.setpgid(0, 0)
        for fd in pool.PRIVATE_FDS:
            try:
                os.close(fd)
            except OSError:
                pass
        return original(*args, **kwargs)

    checker.unsafe_execute = unsafe_execute  # the Process target untrusted_check uses
    return checker


def task_timeout(ref_time: list[float], factor: float, raise_cap: bool = True) -> float:
    """EvalPlus's 60 s cap per untrusted_check, raised to factor x the reference total when
    the reference solution alone needs more than 1/factor of it (e.g. MBPP+ 599); under
    the evalplus policy (``raise_cap`` False) the cap stays 60 s, as in evalplus 0.3.1."""
    if not raise_cap:
        return protocol.EVALPLUS_TASK_TIMEOUT
    return max(protocol.EVALPLUS_TASK_TIMEOUT, factor * sum(ref_time))


def _job_deadline(meta: dict[str, Any], factor: float, raise_cap: bool) -> float:
    """Generous bound on one job (base + plus checks); past it the worker is killed."""
    base = task_timeout([float(meta["base_time_sum"])], factor, raise_cap)
    plus = task_timeout([float(meta["plus_time_sum"])], factor, raise_cap)
    return base + plus + 2 * 3.0 + JOB_SLACK_S


def _cost(meta: dict[str, Any]) -> float:
    return float(meta["base_time_sum"]) + float(meta["plus_time_sum"]) + 1e-5 * (
        int(meta["n_base"]) + int(meta["n_plus"]))


def _make_judge(settings: Settings, dataset: str, by_task: dict[str, Any],
                solutions: list[dict[str, Any]], checker: Any, factor: float,
                measured_scale: float) -> Callable[[int], dict[str, Any]]:
    serialize = compat.mbpp_codecs()[1] if dataset == "mbpp" else None
    tasks_dir = os.path.join(settings.oracle_dir, protocol.TASKS_DIRNAME)
    raise_cap = settings.policy != protocol.EVALPLUS
    other_name, other_min, other_factor = settings.other_policy(measured_scale)

    # the per-task cap and the memory budget, see compat.EvalplusOsView
    os_view = compat.EvalplusOsView(memory_budget=settings.memory_budget)
    checker.os = os_view
    clock = Clock()
    checker.time_limit = clock.wrap(checker.time_limit)

    def check(code: str, data: dict[str, Any], part: str) -> tuple[str, list[Any], bool,
                                                                    str | None]:
        inputs, ref_time = data[f"{part}_input"], data[f"{part}_time"]
        os_view.task_timeout = task_timeout(ref_time, factor, raise_cap)
        clock.arm([max(other_min, other_factor * t) for t in ref_time])
        started = time.perf_counter()
        status, details = checker.untrusted_check(
            dataset, code, inputs, data["entry_point"], expected=data[part],
            atol=data["atol"], ref_time=ref_time, fast_check=True,
            min_time_limit=settings.min_time_limit, gt_time_limit_factor=factor,
        )
        elapsed = time.perf_counter() - started
        # evalplus.evaluate's get_failed_tests without test_details: the last test run.
        failed = [] if status == protocol.PASS or not details else [inputs[len(details) - 1]]
        # Could the clock have decided this? (timeout, or the failing test ran its limit)
        suspect = status == protocol.TIMEOUT or (
            status == protocol.FAIL and bool(details) and elapsed >= max(
                settings.min_time_limit, factor * ref_time[len(details) - 1]))
        if serialize is not None:
            failed = serialize(data["task_id"], failed)
        return str(status), failed, suspect, clock_note(status, suspect, *clock.read(),
                                                          other_name)

    def judge(index: int) -> dict[str, Any]:
        solution = solutions[index]
        meta = by_task[solution["task_id"]]
        with open(os.path.join(tasks_dir, meta["file"]), "rb") as handle:
            data = pickle.load(handle)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        base_status, base_failed, base_suspect, base_clock = check(solution["solution"],
                                                                   data, "base")
        strays = hardening.kill_descendants()
        plus_status, plus_failed, plus_suspect, plus_clock = check(solution["solution"],
                                                                   data, "plus")
        strays += hardening.kill_descendants()
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        tmp_bytes, tampered = runtime.reset_worker_tmp()
        return {
            "key": solution["key"], "task_id": solution["task_id"],
            "base_status": base_status, "plus_status": plus_status,
            "base_fail_tests": base_failed, "plus_fail_tests": plus_failed,
            "wall_s": wall, "cpu_s": cpu, "strays": strays, "tmp_bytes": tmp_bytes,
            "tampered": tampered, "clock_suspect": base_suspect or plus_suspect,
            "clock": "; ".join(f"{part}: {note}" for part, note in
                               (("base", base_clock), ("plus", plus_clock)) if note) or None,
        }

    return judge


def clock_note(status: str, suspect: bool, ratio: float, other_ratio: float,
                other: str) -> str | None:
    """Why a check's verdict was decided by the clock, or None: it timed out, failed at
    its limit, or passed using more than NEAR_LIMIT of a limit or more than the other
    policy's limit (the verdict would change under it)."""
    if status == protocol.TIMEOUT:
        return "timed out"
    if suspect:
        return "failed at its time limit"
    if status != protocol.PASS:
        return None
    if other_ratio > 1.0:
        return (f"passed using {ratio:.0%} of its limit; it would time out under the "
                f"{other} limits ({other_ratio:.0%} of theirs)")
    if ratio > protocol.NEAR_LIMIT:
        return f"passed using {ratio:.0%} of its time limit"
    return None


def _schedule(workers: int, judge: Callable[[int], dict[str, Any]],
              solutions: list[dict[str, Any]], costs: list[float],
              deadlines: list[float]) -> int:
    workers_pool = WorkerPool(workers, judge, setup=runtime.worker_setup,
                              deadline_s=deadlines.__getitem__)
    # Longest first: the slowest tasks must not start last (shortest makespan).
    for index in sorted(range(len(solutions)), key=lambda i: -costs[i]):
        workers_pool.submit(index)
    referee = _Referee(workers_pool, solutions)
    try:
        for outcome in workers_pool.run(heartbeat=lambda: runtime.emit("heartbeat"),
                                        janitor=referee.sweep):
            referee.handle(outcome)
    finally:
        workers_pool.close()
    runtime.emit("done", mode="evaluate", judged=referee.emitted,
                 quarantined=len(referee.quarantined), retried=len(referee.retried))
    return 0


class _Referee:
    """Decides when a result is final (see the module docstring) and emits it."""

    def __init__(self, workers_pool: WorkerPool, solutions: list[dict[str, Any]]) -> None:
        self.pool = workers_pool
        self.solutions = solutions
        self.finished: set[int] = set()
        self.disruptive: set[int] = set()
        self.quarantined: set[int] = set()
        self.retried: set[int] = set()
        self.held: dict[int, Outcome] = {}
        self.emitted = 0

    def sweep(self, workers_pool: WorkerPool) -> None:
        """Remove scratch files no worker owns; whoever was running then is disruptive."""
        keep = {runtime.worker_dir(w.slot, w.pid) for w in workers_pool.workers.values()}
        if runtime.sweep_scratch(keep):
            self.disruptive |= workers_pool.busy_jobs()

    def handle(self, outcome: Outcome) -> None:
        job = outcome.job
        self.finished.add(job)
        if outcome.kind == "died":
            self._handle_death(outcome)
        elif outcome.result is None:  # the checker itself failed (e.g. fork: pids exhausted)
            self.disruptive.add(job)
            if job in self.quarantined:
                runtime.emit("job_error", key=self.solutions[job]["key"],
                             task_id=self.solutions[job]["task_id"], error=outcome.reason)
            else:
                self._quarantine(job)
        else:
            self._handle_result(outcome, outcome.result)
        self._release_held()

    def _handle_death(self, outcome: Outcome) -> None:
        job = outcome.job
        self.disruptive.add(job)
        if job in self.quarantined:
            self._emit_failure(job, f"{outcome.reason} (also when judged alone)")
        else:
            self._quarantine(job)

    def _handle_result(self, outcome: Outcome, result: dict[str, Any]) -> None:
        job = outcome.job
        if (result["strays"] or result["cpu_s"] > 1.25 * result["wall_s"] + 0.5
                or result["tmp_bytes"] > SCRATCH_BYTES_DISRUPTIVE):
            self.disruptive.add(job)
        if result["tampered"] and job not in self.quarantined:
            self._quarantine(job)  # its scratch space vanished under it: judge it again
            return
        if result["clock_suspect"] and job not in self.retried | self.quarantined:
            self.retried.add(job)  # a time limit may have decided it: one more run
            self.pool.submit(job)
            return
        passed = result["base_status"] == result["plus_status"] == protocol.PASS
        if passed or job in self.quarantined:
            self._emit(job, result, quarantined=job in self.quarantined)
        else:
            self.held[job] = outcome

    def _release_held(self) -> None:
        for job, outcome in list(self.held.items()):
            if not outcome.peers <= self.finished:
                continue
            del self.held[job]
            if outcome.peers & self.disruptive:
                self._quarantine(job)
            else:
                assert outcome.result is not None
                self._emit(job, outcome.result, quarantined=False)

    def _quarantine(self, job: int) -> None:
        self.quarantined.add(job)
        self.pool.submit_exclusive(job)

    def _emit(self, job: int, result: dict[str, Any], *, quarantined: bool) -> None:
        self.emitted += 1
        runtime.emit("verdict", quarantined=quarantined, error=None, **result)

    def _emit_failure(self, job: int, reason: str) -> None:
        solution = self.solutions[job]
        self.emitted += 1
        runtime.emit("verdict", key=solution["key"], task_id=solution["task_id"],
                     base_status=protocol.FAIL, plus_status=protocol.FAIL,
                     base_fail_tests=[], plus_fail_tests=[], wall_s=0.0, cpu_s=0.0,
                     strays=0, quarantined=True, error=reason, clock=None)


def _load_json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return dict(json.load(handle))


def _load_solutions(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
