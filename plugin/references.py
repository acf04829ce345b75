"""Reference scores (``reference-scores.json``) and the pass@1 gate against them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin.errors import ConfigError

#: dataset name -> key of the plus score in reference-scores.json
PLUS_KEY = {"humaneval": "humaneval_plus", "mbpp": "mbpp_plus"}


@dataclass(frozen=True)
class Reference:
    profile: str
    dataset: str
    plus_pass_at_1: float | None  # percent
    base_pass_at_1: float | None
    tolerance_pp: float
    provenance: str
    reference_model: str | None = None


@dataclass(frozen=True)
class Published:
    model: str
    scores: Mapping[str, float | None]
    source: str


@dataclass(frozen=True)
class References:
    path: Path
    default_tolerance_pp: float
    profiles: Mapping[str, Mapping[str, Any]]
    published: tuple[Published, ...]

    def for_profile(self, profile: str, dataset: str,
                    tolerance_pp: float | None = None) -> Reference:
        entry = self.profiles.get(profile, {})
        plus_key = PLUS_KEY[dataset]
        tolerance = entry.get("tolerance_pp")
        if tolerance is None:
            tolerance = tolerance_pp if tolerance_pp is not None else self.default_tolerance_pp
        return Reference(
            profile=profile, dataset=dataset,
            plus_pass_at_1=entry.get(plus_key),
            base_pass_at_1=entry.get(dataset),
            tolerance_pp=float(tolerance),
            provenance=str(entry.get("provenance") or "no entry in reference-scores.json"),
            reference_model=entry.get("reference_model"),
        )


def load_references(path: Path) -> References:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("reference scores file not found", path=str(path),
                          fix="create it (see the project's reference-scores.json) or pass "
                              "--bench-references PATH") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc.msg}", path=str(path), line=exc.lineno,
                          fix="fix the JSON syntax") from None
    meta = data.get("metadata", {})
    published = tuple(
        Published(model=name, source=str(entry.get("source", "")),
                  scores={k: v for k, v in entry.items() if k != "source"})
        for name, entry in data.get("models", {}).items())
    return References(path=path,
                      default_tolerance_pp=float(meta.get("default_tolerance_pp", 5.0)),
                      profiles=data.get("profiles", {}), published=published)


@dataclass(frozen=True)
class GateOutcome:
    status: str  # pass | fail | no_reference | partial
    delta_pp: float | None
    message: str

    @property
    def ok(self) -> bool:
        return self.status != "fail"


def gate(plus_pass_at_1: float, reference: Reference, *, partial: bool = False) -> GateOutcome:
    """Fail when plus pass@1 < reference - tolerance (all in percentage points)."""
    ref = reference.plus_pass_at_1
    if partial:
        return GateOutcome("partial", None, "partial run (--bench-limit): gate not applied")
    if ref is None:
        return GateOutcome("no_reference", None,
                           f"{reference.profile}: no {reference.dataset}+ reference "
                           f"({reference.provenance})")
    delta = round(plus_pass_at_1 - ref, 2)
    floor = ref - reference.tolerance_pp
    if plus_pass_at_1 + 1e-9 < floor:
        return GateOutcome(
            "fail", delta,
            f"{reference.profile}: {reference.dataset}+ pass@1 {plus_pass_at_1:.2f}% is below "
            f"reference {ref:.2f}% - tolerance {reference.tolerance_pp:.2f} pp = {floor:.2f}% "
            f"(delta {delta:+.2f} pp; reference: {reference.provenance})")
    return GateOutcome("pass", delta,
                       f"{reference.profile}: {plus_pass_at_1:.2f}% vs reference {ref:.2f}% "
                       f"(delta {delta:+.2f} pp, tolerance {reference.tolerance_pp:.2f} pp)")
