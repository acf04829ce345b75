"""What an evaluation must judge: one item per task, keyed by program, dataset and limits
(the key under which a verdict is journaled and reused)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from plugin.datasets import Dataset
from plugin.sandbox import protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    key: str
    task_id: str
    solution: str


@dataclass(frozen=True)
class Plan:
    items: tuple[Item, ...]
    missing: tuple[str, ...]
    unknown: tuple[str, ...]


def solution_key(dataset: Dataset, task_id: str, solution: str, limits: Limits) -> str:
    """Identity of one judgement: same program, data and limits -> same verdict."""
    blob = json.dumps([dataset.sha256, protocol.EVALPLUS_VERSION, protocol.ORACLE_FORMAT,
                       limits.min_time_limit, limits.gt_time_limit_factor,
                       limits.identity(),
                       task_id, solution])
    return hashlib.sha256(blob.encode()).hexdigest()


def plan_of(dataset: Dataset, solutions: Mapping[str, str], limits: Limits) -> Plan:
    unknown = tuple(t for t in solutions if t not in dataset.tasks)
    if unknown:
        log.warning("%d solutions are for tasks not in %s and are ignored: %s",
                    len(unknown), dataset.label, ", ".join(unknown[:5]))
    items = tuple(Item(solution_key(dataset, t, solutions[t], limits), t, solutions[t])
                  for t in dataset.tasks if t in solutions)
    missing = tuple(t for t in dataset.tasks if t not in solutions)
    return Plan(items=items, missing=missing, unknown=unknown)


@dataclass(frozen=True)
class Limits:
    """Per-test time limit: max(min_time_limit, gt_time_limit_factor * reference time),
    the factor scaled by measured load when ``load_scaling``; memory: ``memory_budget``
    bytes of address space per test process on top of what it holds when it starts.

    ``policy`` names the rules (``--limits``): "harness" (the default) or "evalplus"
    (evalplus 0.3.1's time rules); explicit times make it "custom".
    """

    min_time_limit: float = protocol.DEFAULT_MIN_TIME_LIMIT
    gt_time_limit_factor: float = protocol.DEFAULT_GT_TIME_LIMIT_FACTOR
    load_scaling: bool = True
    policy: str = protocol.HARNESS
    memory_budget: int = protocol.MEMORY_BUDGET_BYTES

    @classmethod
    def named(cls, policy: str, *, min_time_limit: float | None = None,
              gt_time_limit_factor: float | None = None) -> Limits:
        """The rules of ``policy``; explicit times override them (then policy "custom")."""
        if policy not in protocol.POLICIES:
            raise ValueError(f"unknown limit policy {policy!r}; "
                             f"choose {' or '.join(protocol.POLICIES)}")
        minimum, factor, scaling = protocol.POLICIES[policy]
        custom = ((min_time_limit is not None and min_time_limit != minimum)
                  or (gt_time_limit_factor is not None and gt_time_limit_factor != factor))
        return cls(min_time_limit=minimum if min_time_limit is None else min_time_limit,
                   gt_time_limit_factor=factor if gt_time_limit_factor is None
                   else gt_time_limit_factor,
                   load_scaling=scaling, policy="custom" if custom else policy)

    def other(self) -> Limits:
        """The policy a verdict is compared with to tell whether the limits decided it:
        evalplus for harness (and custom) limits, harness for evalplus limits."""
        return Limits.named(protocol.HARNESS if self.policy == protocol.EVALPLUS
                            else protocol.EVALPLUS)

    def identity(self) -> dict[str, object]:
        """What a verdict depends on besides the times (part of its key)."""
        return {"policy": self.policy, "load_scaling": self.load_scaling,
                "memory_budget": self.memory_budget}

    def describe(self) -> str:
        scaled = ", scaled by load" if self.load_scaling else ""
        return (f"{self.policy}: max({self.min_time_limit:g} s, "
                f"{self.gt_time_limit_factor:g} x reference time{scaled}) per test, "
                f"{self.memory_budget >> 30} GiB per test process")

