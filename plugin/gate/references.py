"""reference-scores.json: published scores, per-profile references and tolerances."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plugin.errors import ConfigError

#: dataset name -> key of the plus score in reference-scores.json
PLUS_KEY = {"humaneval": "humaneval_plus", "mbpp": "mbpp_plus"}
PROVENANCE_KINDS = ("published", "designed", "local baseline", "none")


@dataclass(frozen=True)
class Baseline:
    """A pinned baseline run: from the history database, or pinned in
    reference-scores.json (``baselines``, then ``source`` names the file)."""

    run_id: str
    fingerprint: str
    plus_pass_at_1: float  # percent
    n_tasks: int
    partial: bool
    passed: Mapping[str, bool] = field(repr=False)  # task -> passed base and plus
    pinned_at: str = ""
    source: str = ""


@dataclass(frozen=True)
class Reference:
    profile: str
    dataset: str
    plus_pass_at_1: float | None  # percent
    base_pass_at_1: float | None
    tolerance_pp: float
    provenance: str
    reference_model: str | None = None
    provenance_kind: str = "none"
    #: the baseline pinned in reference-scores.json: the gate's baseline when the
    #: history database has none (a fresh machine, a CI runner)
    pinned: Baseline | None = None


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
        """The profile's reference; ``tolerance_pp`` (the option) replaces the file's
        default tolerance, a profile's own ``tolerance_pp`` wins over both."""
        entry = self.profiles.get(profile, {})
        tolerance = entry.get("tolerance_pp")
        if tolerance is None:
            tolerance = tolerance_pp if tolerance_pp is not None else self.default_tolerance_pp
        # a dataset's own provenance (provenance_by_dataset.<dataset>) wins over the entry's
        kind, text = provenance_text((entry.get("provenance_by_dataset") or {}).get(
            dataset, entry.get("provenance")))
        return Reference(
            profile=profile, dataset=dataset,
            plus_pass_at_1=entry.get(PLUS_KEY[dataset]),
            base_pass_at_1=entry.get(dataset),
            tolerance_pp=float(tolerance),
            provenance=text or "no entry in reference-scores.json",
            reference_model=entry.get("reference_model"),
            provenance_kind=kind,
            pinned=pinned_baseline(self.path, entry, dataset),
        )

    def published_json(self) -> list[dict[str, Any]]:
        """The published scores as plain JSON (stored with every run in the history)."""
        return [{"model": p.model, "source": p.source, **dict(p.scores)}
                for p in self.published]


def provenance_text(value: Any) -> tuple[str, str]:
    """(kind, one-line text) of a provenance entry: a string or an object."""
    if value is None:
        return "none", ""
    if isinstance(value, str):
        return "none", value
    kind = str(value.get("kind", "none"))
    parts = [] if kind == "none" else [kind]
    if value.get("source"):
        parts.append(str(value["source"]))
    if value.get("run_id"):
        parts.append(f"run {value['run_id']}")
    if value.get("fingerprint"):
        parts.append(f"fingerprint {str(value['fingerprint'])[:12]}")
    if value.get("note"):
        parts.append(str(value["note"]))
    if kind == "none":
        return kind, ", ".join(parts)
    return kind, ": ".join(parts[:2]) + "".join(f", {p}" for p in parts[2:])


def pinned_baseline(path: Path, entry: Mapping[str, Any], dataset: str) -> Baseline | None:
    """``baselines.<dataset>`` of a profile's entry: the tasks of the pinned run (a fixed
    subset or all), the ones that passed base and plus, and where the run came from."""
    pin = (entry.get("baselines") or {}).get(dataset)
    if not pin:
        return None
    tasks, passed = list(pin["tasks"]), set(pin["passed"])
    return Baseline(
        run_id=str(pin["run_id"]), fingerprint=str(pin["fingerprint"]),
        plus_pass_at_1=round(100.0 * len(passed) / len(tasks), 2), n_tasks=len(tasks),
        partial=bool(pin.get("partial", False)), passed={t: t in passed for t in tasks},
        pinned_at=str(pin.get("recorded", "")), source=path.name)


def published_from_json(items: Sequence[Mapping[str, Any]]) -> tuple[Published, ...]:
    return tuple(Published(model=str(i["model"]), source=str(i.get("source", "")),
                           scores={k: v for k, v in i.items() if k not in ("model", "source")})
                 for i in items)


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
    profiles = data.get("profiles", {})
    for name, entry in profiles.items():
        _check_profile(path, name, entry)
    return References(path=path,
                      default_tolerance_pp=float(meta.get("default_tolerance_pp", 5.0)),
                      profiles=profiles, published=published)


def _check_profile(path: Path, name: str, entry: Mapping[str, Any]) -> None:
    def bad(message: str, fix: str) -> ConfigError:
        return ConfigError(f"profile {name!r}: {message}", path=str(path), fix=fix)

    for key in (*PLUS_KEY, *PLUS_KEY.values(), "tolerance_pp"):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not 0 <= value <= 100):
            raise bad(f"{key} = {value!r} is not a percentage",
                      f"write {key} as a number of percent (80.49) or null")
    for dataset, pin in (entry.get("baselines") or {}).items():
        _check_pin(bad, dataset, pin)
    by_dataset = entry.get("provenance_by_dataset") or {}
    unknown = sorted(set(by_dataset) - set(PLUS_KEY))
    if unknown:
        raise bad(f"provenance_by_dataset.{unknown[0]}: unknown dataset",
                  f"use one of {', '.join(PLUS_KEY)}")
    for prov in (entry.get("provenance"), *by_dataset.values()):
        _check_provenance(bad, prov)


def _check_provenance(bad: Any, prov: Any) -> None:
    if prov is None or isinstance(prov, str):
        return
    kind = prov.get("kind") if isinstance(prov, Mapping) else None
    if kind not in PROVENANCE_KINDS:
        raise bad(f"provenance kind {kind!r} is unknown",
                  f"use one of {', '.join(PROVENANCE_KINDS)}")
    if kind == "published" and not prov.get("source"):
        raise bad("a published score needs its source", "add provenance.source")
    if kind == "local baseline" and not (prov.get("run_id") and prov.get("fingerprint")):
        raise bad("a local baseline needs run_id and fingerprint",
                  "copy them from `python -m plugin report --baselines`")


def _check_pin(bad: Any, dataset: str, pin: Any) -> None:
    fix = ("write baselines.<dataset> as {run_id, fingerprint, recorded, partial, tasks: "
           "[task ids], passed: [task ids]}: `python -m plugin report --baselines` "
           "prints it for a run")
    if dataset not in PLUS_KEY:
        raise bad(f"baselines.{dataset}: unknown dataset", f"use one of {', '.join(PLUS_KEY)}")
    if not isinstance(pin, Mapping) or not all(pin.get(k) for k in ("run_id", "fingerprint")):
        raise bad(f"baselines.{dataset} needs run_id and fingerprint", fix)
    tasks, passed = pin.get("tasks"), pin.get("passed")
    if not isinstance(tasks, list) or not tasks or not isinstance(passed, list):
        raise bad(f"baselines.{dataset} needs a non-empty task list and a passed list", fix)
    if not set(passed) <= set(tasks):
        raise bad(f"baselines.{dataset}: passed names tasks outside its task list "
                  f"({', '.join(sorted(set(passed) - set(tasks))[:3])})", fix)
