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
                       limits.min_time_limit, limits.gt_time_limit_factor, task_id, solution])
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
    """Per-test time limit: max(min_time_limit, gt_time_limit_factor * reference time)."""

    min_time_limit: float = protocol.DEFAULT_MIN_TIME_LIMIT
    gt_time_limit_factor: float = protocol.DEFAULT_GT_TIME_LIMIT_FACTOR
