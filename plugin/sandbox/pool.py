"""A small pool of persistent, forked worker processes talking JSON lines over pipes.

Why not ``multiprocessing.Pool`` / ``ProcessPoolExecutor``: their workers are daemonic or
unpickle whatever comes back, and one killed worker breaks the whole pool. Here a worker
that dies (killed by the code it was judging, or past its deadline) is replaced and the job
is reported as ``died``; the caller decides what to do with it.

Workers are forked from the runner after it has loaded everything they need, so jobs are
plain integers and nothing is pickled.
"""

from __future__ import annotations

import collections
import json
import os
import select
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import hardening

MAX_FD = 4096


@dataclass
class Outcome:
    """What happened to one job: ``done`` with a result, or ``died`` with a reason."""

    job: int
    kind: str  # "done" | "died"
    result: dict[str, Any] | None
    reason: str
    started: float
    ended: float
    worker: int
    peers: set[int] = field(default_factory=set)


@dataclass
class _Worker:
    slot: int
    pid: int
    to_worker: int
    from_worker: int
    buf: bytes = b""
    job: int | None = None
    started: float = 0.0
    exited: bool = False  # reaped by _reap_orphans


# The worker's own pipe ends; untrusted children must not keep them (see evaluate.py).
PRIVATE_FDS: list[int] = []


class WorkerPool:
    """Run ``work(job)`` for integer jobs in ``size`` forked workers."""

    def __init__(self, size: int, work: Callable[[int], dict[str, Any]],
                 setup: Callable[[int], None],
                 deadline_s: Callable[[int], float] | None) -> None:
        self.size = max(1, size)
        self.work = work
        self.setup = setup
        self.deadline_s = deadline_s
        self.workers: dict[int, _Worker] = {}
        self.queue: collections.deque[int] = collections.deque()
        self.exclusive: collections.deque[int] = collections.deque()
        self.peers: dict[int, set[int]] = {}
        self.started_at: dict[int, float] = {}
        self._last_sweep = 0.0
        self._spawn_failures = 0

    # -- submission --------------------------------------------------------------------
    def submit(self, job: int) -> None:
        self.queue.append(job)

    def submit_exclusive(self, job: int) -> None:
        """Run ``job`` alone: after the normal queue drains, with no other job in flight."""
        self.exclusive.append(job)

    def busy_jobs(self) -> set[int]:
        return {w.job for w in self.workers.values() if w.job is not None}

    def has_work(self) -> bool:
        return bool(self.queue or self.exclusive or self.busy_jobs())

    # -- main loop ---------------------------------------------------------------------
    def run(self, heartbeat: Callable[[], None] | None = None, heartbeat_s: float = 10.0,
            janitor: Callable[[WorkerPool], None] | None = None) -> Iterator[Outcome]:
        """Yield outcomes until all submitted jobs are done; ``janitor`` runs every second."""
        last_beat = last_sweep = time.monotonic()
        while self.has_work():
            yield from self._replace_stopped()
            self._fill_slots()
            self._dispatch()
            yield from self._collect(timeout=1.0)
            yield from self._enforce_deadlines()
            self._reap_orphans()
            now = time.monotonic()
            if janitor is not None and now - last_sweep > 1.0:
                janitor(self)
                last_sweep = now
            if heartbeat is not None and now - last_beat > heartbeat_s:
                heartbeat()
                last_beat = now

    def close(self) -> None:
        for worker in list(self.workers.values()):
            self._stop(worker)
        self.workers.clear()

    # -- internals ---------------------------------------------------------------------
    def _fill_slots(self) -> None:
        for worker in list(self.workers.values()):
            if worker.exited and worker.job is None:
                self._stop(worker)
                del self.workers[worker.slot]
        wanted = self.size if (self.queue or self.exclusive) else 0
        for slot in range(self.size):
            if slot not in self.workers and len(self.workers) < wanted:
                try:
                    self.workers[slot] = self._spawn(slot)
                except OSError:  # e.g. pids exhausted by a fork bomb: retry next round
                    self._kill_strays(force=True)
                    time.sleep(0.2)
                    if not self.workers:
                        self._spawn_failures += 1
                        if self._spawn_failures > 50:
                            raise

    def _spawn(self, slot: int) -> _Worker:
        job_r, job_w = os.pipe()
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # worker
            code = 1
            try:
                _close_all_except({job_r, res_w})
                PRIVATE_FDS[:] = [job_r, res_w]
                self.setup(slot)
                _worker_loop(job_r, res_w, self.work)
                code = 0
            finally:
                os._exit(code)
        os.close(job_r)
        os.close(res_w)
        return _Worker(slot=slot, pid=pid, to_worker=job_w, from_worker=res_r)

    def _dispatch(self) -> None:
        busy = self.busy_jobs()
        idle = [w for w in self.workers.values() if w.job is None and not w.exited]
        if self.queue:
            for worker in idle:
                if not self.queue:
                    break
                self._send(worker, self.queue.popleft())
        elif self.exclusive and not busy and idle:
            self._send(idle[0], self.exclusive.popleft())

    def _send(self, worker: _Worker, job: int) -> None:
        now = time.monotonic()
        running = self.busy_jobs()
        self.peers[job] = set(running)
        for other in running:
            self.peers.setdefault(other, set()).add(job)
        worker.job, worker.started = job, now
        self.started_at[job] = now
        try:
            os.write(worker.to_worker, json.dumps({"job": job}).encode() + b"\n")
        except OSError:  # the worker died while idle: replace it, run the job elsewhere
            worker.job = None
            self._stop(worker)
            del self.workers[worker.slot]
            self.queue.appendleft(job)

    def _collect(self, timeout: float) -> Iterator[Outcome]:
        by_fd = {w.from_worker: w for w in self.workers.values() if w.job is not None}
        if not by_fd:
            time.sleep(0.01)
            return
        try:
            ready, _, _ = select.select(list(by_fd), [], [], timeout)
        except InterruptedError:
            return
        for worker in by_fd.values():
            if worker.exited and worker.from_worker not in ready:
                yield self._died(worker, "worker process died while judging")
        for fd in ready:
            worker = by_fd[fd]
            if worker.slot not in self.workers:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                yield self._died(worker, "worker process died while judging")
                continue
            worker.buf += chunk
            while b"\n" in worker.buf and worker.job is not None:
                line, worker.buf = worker.buf.split(b"\n", 1)
                yield self._finished(worker, json.loads(line))

    def _finished(self, worker: _Worker, message: dict[str, Any]) -> Outcome:
        job = worker.job
        assert job is not None
        worker.job = None
        return Outcome(job=job, kind="done", result=message.get("result"),
                       reason=str(message.get("error") or ""), started=self.started_at[job],
                       ended=time.monotonic(), worker=worker.slot,
                       peers=self.peers.get(job, set()))

    def _died(self, worker: _Worker, reason: str) -> Outcome:
        job = worker.job
        assert job is not None
        self._stop(worker)
        del self.workers[worker.slot]
        self._after_death()
        return Outcome(job=job, kind="died", result=None, reason=reason,
                       started=self.started_at[job], ended=time.monotonic(),
                       worker=worker.slot, peers=self.peers.get(job, set()))

    def _enforce_deadlines(self) -> Iterator[Outcome]:
        if self.deadline_s is None:
            return
        now = time.monotonic()
        for worker in list(self.workers.values()):
            if worker.job is None:
                continue
            deadline = self.deadline_s(worker.job)
            if now - worker.started > deadline:
                yield self._died(worker, f"worker exceeded the {deadline:.0f} s job "
                                         "deadline and was killed")

    def _replace_stopped(self) -> Iterator[Outcome]:
        """A stopped worker (SIGSTOP, SIGTSTP...: kill(-1, SIGSTOP) from judged code reaches
        every process of the sandbox user except PID 1) would hold its job until the job
        deadline, and an idle one would stall the next job it is given, even one judged
        alone. Replace it at once; its job counts as died (judged again alone)."""
        for worker in list(self.workers.values()):
            if self.workers.get(worker.slot) is not worker:
                continue  # replaced while handling an earlier one
            if hardening.process_state(worker.pid) not in ("T", "t"):
                continue
            if worker.job is None:
                self._stop(worker)
                del self.workers[worker.slot]
            else:
                yield self._died(worker, "worker process was stopped by a signal and killed")

    def _stop(self, worker: _Worker) -> None:
        for fd in (worker.to_worker, worker.from_worker):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.kill(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        hardening.reap_child(worker.pid)

    def _after_death(self) -> None:
        """Whatever killed a worker may have hit idle ones too (kill -1): kill the orphans
        first (so nothing is still killing), then drop idle workers that did not survive,
        so the next job cannot be blamed for an earlier job's kill."""
        self._kill_strays(force=True)
        time.sleep(0.2)  # let SIGKILLed workers finish exiting
        for worker in list(self.workers.values()):
            if worker.job is None and not _alive(worker.pid):
                self._stop(worker)
                del self.workers[worker.slot]

    def _kill_strays(self, force: bool = False) -> None:
        """Kill processes re-parented to us that are not workers (orphans of dead workers)."""
        now = time.monotonic()
        if not force and now - self._last_sweep < 0.5:
            return
        self._last_sweep = now
        hardening.kill_children(exclude={w.pid for w in self.workers.values()}, rounds=20)

    def _reap_orphans(self) -> None:
        """Collect zombies re-parented to us (we may be PID 1 in the container)."""
        self._kill_strays()
        by_pid = {w.pid: w for w in self.workers.values()}
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = by_pid.get(pid)
            if worker is None:
                continue
            if worker.job is None:  # died while idle: replace it
                self._stop(worker)
                del self.workers[worker.slot]
            else:  # reported as died by the next _collect (after draining its output)
                worker.exited = True


def _alive(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


def _close_all_except(keep: set[int]) -> None:
    start = 3
    for fd in sorted(keep):
        if fd >= start:
            os.closerange(start, fd)
            start = fd + 1
    os.closerange(start, MAX_FD)


def _worker_loop(job_r: int, res_w: int, work: Callable[[int], dict[str, Any]]) -> None:
    with os.fdopen(job_r, "rb", buffering=0) as jobs:
        buf = b""
        while True:
            chunk = jobs.read(65536)
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                job = int(json.loads(line)["job"])
                try:
                    message: dict[str, Any] = {"job": job, "result": work(job)}
                except Exception as exc:  # infrastructure error, reported to the caller
                    message = {"job": job, "result": None, "error": f"{type(exc).__name__}: {exc}"}
                _write_all(res_w, (json.dumps(message, default=_jsonable) + "\n").encode())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, complex):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)
