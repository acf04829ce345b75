"""How close the tests of one check came to their time limits.

EvalPlus's ``unsafe_execute`` runs each test inside ``time_limit(time_limits[i])``. The
worker replaces that context manager (in the ``evalplus.eval`` module it forks from) with
a timed one; the forked test process writes, into memory shared with the worker, the
largest share of its limit that a completed test used, under this run's limits and under
the other policy's (see plan.Limits.other). The worker reads both after the check: a pass
that used more than half its limit, or more than the other policy allows, was decided by
the clock (docs/EVALUATION.md, "Verdicts decided by the clock").
"""

from __future__ import annotations

import contextlib
import mmap
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

_FORMAT = "dd"  # max(elapsed / limit), max(elapsed / other policy's limit)


class Clock:
    def __init__(self) -> None:
        # MAP_SHARED | MAP_ANONYMOUS: the forked test process writes, the worker reads.
        self.shared = mmap.mmap(-1, struct.calcsize(_FORMAT))
        self.other_limits: list[float] = []
        self.index = 0

    def arm(self, other_limits: list[float]) -> None:
        """Before a check (in the worker): the other policy's limit of each test."""
        struct.pack_into(_FORMAT, self.shared, 0, 0.0, 0.0)
        self.other_limits = other_limits
        self.index = 0

    def read(self) -> tuple[float, float]:
        """After a check: the largest shares of the limits used by a completed test."""
        ratio, other = struct.unpack_from(_FORMAT, self.shared)
        return float(ratio), float(other)

    def wrap(self, time_limit: Callable[[float], Any]) -> Callable[[float], Any]:
        """A ``time_limit`` that also records how much of it each completed test used."""
        clock = self

        @contextlib.contextmanager
        def timed_limit(seconds: float) -> Iterator[None]:
            index = clock.index
            clock.index += 1
            started = time.perf_counter()
            with time_limit(seconds):
                yield
            elapsed = time.perf_counter() - started  # only tests that completed get here
            other = (clock.other_limits[index] if index < len(clock.other_limits)
                     else seconds)
            ratio, other_ratio = struct.unpack_from(_FORMAT, clock.shared)
            struct.pack_into(_FORMAT, clock.shared, 0, max(ratio, elapsed / seconds),
                             max(other_ratio, elapsed / other))

        return timed_limit
