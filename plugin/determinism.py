"""The determinism check (``--bench-determinism N``): do N parallel slots change answers?

A profile is often 2-4x faster on a GPU with ``-np N`` and N requests in flight, but
llama.cpp does not promise identical answers then (batched kernels sum in another order,
the KV cache is shared). The check runs the profile's dataset a second time on a server
started with ``-np N``, everything else identical, and compares task by task with the
first run: does the completion text differ, does the verdict (base and plus) flip. It
reports both throughputs and one line ("4 slots: identical answers" or "4 slots: 3
answers differ, 1 verdict flips"). It takes part in no gate.

The second server runs alone: the profile's own server is stopped first (a GPU holds one
model), and a later test of the profile starts it again. Its answers are stored, like any
run's, in ``<profile>/<dataset>/determinism-np<N>/`` (a re-run reuses them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from plugin.config.profile import Profile
from plugin.datasets import Dataset
from plugin.runner import BenchResult, RunOptions, run_benchmark
from plugin.server.lazy import LazyServer

_SLOT_FLAGS = ("-np", "--parallel")


def with_slots(profile: Profile, slots: int) -> Profile:
    """The profile with ``-np slots`` in place of its own ``-np`` / ``--parallel``."""
    args: list[str] = []
    skip = False
    for arg in profile.extra_args:
        if skip:
            skip = False
            continue
        if arg in _SLOT_FLAGS:
            skip = True
            continue
        if arg.startswith(tuple(f"{flag}=" for flag in _SLOT_FLAGS)):
            continue
        args.append(arg)
    return replace(profile, extra_args=(*args, "-np", str(slots)))


@dataclass(frozen=True)
class Determinism:
    """The comparison of a run with its N-slot twin (stored in the report row as JSON)."""

    slots: int
    n_tasks: int
    differ: tuple[str, ...]  # tasks whose completion text differs
    flips: tuple[tuple[str, str, str], ...]  # (task, first verdict, N-slot verdict)
    #: Throughput of each run: completion tokens over its generation wall time, all
    #: requests together (None when the run reused stored answers: nothing was timed).
    tokens_per_s: float | None
    tokens_per_s_n: float | None
    out_dir: str

    @property
    def finding(self) -> str:
        if not self.differ and not self.flips:
            return f"{self.slots} slots: identical answers"
        return (f"{self.slots} slots: {_count(len(self.differ), 'answer', 'differ')}, "
                f"{_count(len(self.flips), 'verdict', 'flip')}")

    def to_json(self) -> dict[str, Any]:
        return {"slots": self.slots, "n_tasks": self.n_tasks, "finding": self.finding,
                "differ": list(self.differ),
                "flips": [{"task": t, "first": a, "slots": b} for t, a, b in self.flips],
                "tokens_per_s": self.tokens_per_s, "tokens_per_s_n": self.tokens_per_s_n,
                "out_dir": self.out_dir}


def _count(n: int, noun: str, verb: str) -> str:
    """'1 answer differs', '2 answers differ', '0 verdicts flip'."""
    return f"{n} {noun}s {verb}" if n != 1 else f"1 {noun} {verb}s"


def _verdict(result: BenchResult, task_id: str) -> str:
    facts = result.tasks.get(task_id)
    if facts is None:
        return "missing"
    return "pass" if facts.base == "pass" and facts.plus == "pass" else "fail"


def compare(first: BenchResult, second: BenchResult, slots: int) -> Determinism:
    tasks = [t for t in first.tasks if t in second.tasks]
    differ = tuple(t for t in tasks if first.tasks[t].answer != second.tasks[t].answer)
    flips = tuple((t, _verdict(first, t), _verdict(second, t)) for t in tasks
                  if _verdict(first, t) != _verdict(second, t))
    return Determinism(
        slots=slots, n_tasks=len(tasks), differ=differ, flips=flips,
        tokens_per_s=throughput(first), tokens_per_s_n=throughput(second),
        out_dir=second.out_dir)


def throughput(result: BenchResult) -> float | None:
    """Completion tokens per second of generation wall time, when every answer was asked
    in this run."""
    if result.requests_sent < result.n_tasks or result.gen_wall_s <= 0:
        return None
    tokens = sum(f.completion_tokens or 0 for f in result.tasks.values())
    return round(tokens / result.gen_wall_s, 1)


def check(first: BenchResult, server: LazyServer, dataset: Dataset, slots: int,
          options: RunOptions) -> Determinism:
    """Stop the profile's server, run ``dataset`` again with ``-np slots`` and ``slots``
    requests in flight on a server of its own, and compare with ``first``."""
    server.close()  # one model per GPU; the profile's next test starts it again
    twin_profile = with_slots(server.profile, slots)  # its image resolved (fallback, pull)
    twin = LazyServer(twin_profile, log_path=_twin(server.log_path, slots),
                      run_id=f"{server.run_id}-np{slots}", client=server.client,
                      lock_dir=server.lock_dir)
    try:
        second = run_benchmark(twin_profile, twin, dataset,
                               Path(first.out_dir) / f"determinism-np{slots}",
                               replace(options, concurrency=slots))
    finally:
        twin.close()
    return compare(first, second, slots)


def _twin(log_path: Path, slots: int) -> Path:
    return log_path.with_name(f"{log_path.stem}-np{slots}{log_path.suffix}")
