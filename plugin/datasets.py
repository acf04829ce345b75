"""HumanEval+ and MBPP+ datasets: locate, verify (pinned sha256) and parse the release files.

The release files are the official EvalPlus ``*.jsonl.gz`` assets. They are found in this
order: each of ``search_dirs``, ``$BENCH_DATASETS_DIR``, ``<project root>/../shared/datasets``,
the user cache (``$XDG_CACHE_HOME/llama-bench/datasets``, default ``~/.cache/...``); if none
has the file it is downloaded from the GitHub release into the cache. Whatever the source,
the file must match its pinned sha256.

``evalplus.data`` is deliberately not imported (it pulls in HF ``datasets``, which is slow);
the jsonl.gz is read here. Test inputs are not kept on the host: they are only needed inside
the sandbox, which reads the same verified file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from plugin import atomic
from plugin.cache import cache_root
from plugin.errors import DatasetError

ENV_DATASETS_DIR = "BENCH_DATASETS_DIR"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS_DIR = PROJECT_ROOT.parent / "shared" / "datasets"
DOWNLOAD_TIMEOUT_S = 60.0
DATASET_NAMES = ("humaneval", "mbpp")


@dataclass(frozen=True)
class DatasetPin:
    """One official release file and its pinned sha256."""

    name: str
    version: str
    filename: str
    sha256: str
    url: str


_HE_URL = "https://github.com/evalplus/humanevalplus_release/releases/download/v0.1.10/"
_MBPP_URL = "https://github.com/evalplus/mbppplus_release/releases/download/v0.2.0/"

PINS: Mapping[tuple[str, bool], DatasetPin] = MappingProxyType({
    ("humaneval", False): DatasetPin(
        "humaneval", "v0.1.10", "HumanEvalPlus-v0.1.10.jsonl.gz",
        "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101",
        _HE_URL + "HumanEvalPlus.jsonl.gz",
    ),
    ("humaneval", True): DatasetPin(
        "humaneval", "v0.1.10", "HumanEvalPlus-Mini-v0.1.10.jsonl.gz",
        "91486741f1627101021fbe50523df08eebb5b0bf5e804b633dcd5ca3c14dbd2f",
        _HE_URL + "HumanEvalPlus-Mini.jsonl.gz",
    ),
    ("mbpp", False): DatasetPin(
        "mbpp", "v0.2.0", "MbppPlus-v0.2.0.jsonl.gz",
        "af43697e8791c4c149bdfd6b489d8b5412507551ac20e28a439f650b8225db63",
        _MBPP_URL + "MbppPlus.jsonl.gz",
    ),
})


@dataclass(frozen=True)
class Task:
    """One benchmark problem (test inputs stay in the file; the sandbox reads them)."""

    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    atol: float
    n_base: int
    n_plus: int

    @property
    def canonical_program(self) -> str:
        """The reference program, built the way EvalPlus builds it (prompt + solution)."""
        return self.prompt + self.canonical_solution


@dataclass(frozen=True)
class Dataset:
    """A verified release file and its tasks, ordered as in the file."""

    name: str
    version: str
    sha256: str
    path: Path
    tasks: Mapping[str, Task]
    mini: bool = False
    evalplus_hash: str = ""  # md5 of the decompressed jsonl: the "hash" in eval_results.json

    @property
    def label(self) -> str:
        """Human-readable name, e.g. ``HumanEval+ v0.1.10 (mini)``."""
        base = {"humaneval": "HumanEval+", "mbpp": "MBPP+"}.get(self.name, self.name)
        return f"{base} {self.version}" + (" (mini)" if self.mini else "")


def load_dataset(name: str, *, mini: bool = False, search_dirs: Sequence[Path] = ()) -> Dataset:
    """Find, verify and parse a dataset. Raises DatasetError with the fix on any problem."""
    pin = get_pin(name, mini=mini)
    path = resolve_dataset_file(pin, search_dirs=search_dirs)
    raw = path.read_bytes()
    verify_sha256(path, raw, pin)
    content = _decompress(path, raw)
    tasks = _parse_tasks(path, content)
    return Dataset(
        name=pin.name, version=pin.version, sha256=pin.sha256, path=path,
        tasks=MappingProxyType(tasks), mini=mini,
        evalplus_hash=hashlib.md5(content).hexdigest(),
    )


def get_pin(name: str, *, mini: bool = False) -> DatasetPin:
    """The pinned release file for ``name`` (``humaneval`` | ``mbpp``)."""
    if name not in DATASET_NAMES:
        raise DatasetError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASET_NAMES)} "
            "(fix: pass one of those, e.g. --dataset humaneval)"
        )
    pin = PINS.get((name, mini))
    if pin is None:
        raise DatasetError(
            f"dataset {name!r} has no mini variant (EvalPlus publishes HumanEval+ Mini only); "
            "fix: drop the mini option for this dataset"
        )
    return pin


def candidate_dirs(search_dirs: Sequence[Path] = ()) -> list[Path]:
    """Directories searched for a release file, in resolution order."""
    dirs = [Path(d) for d in search_dirs]
    env_dir = os.environ.get(ENV_DATASETS_DIR)
    if env_dir:
        dirs.append(Path(env_dir))
    dirs.append(SHARED_DATASETS_DIR)
    dirs.append(cache_dir())
    return dirs


def cache_dir() -> Path:
    """The per-user download cache for dataset files."""
    return cache_root() / "datasets"


def resolve_dataset_file(pin: DatasetPin, *, search_dirs: Sequence[Path] = ()) -> Path:
    """The first existing copy of ``pin.filename``; downloads into the cache if none exists."""
    for directory in candidate_dirs(search_dirs):
        candidate = directory / pin.filename
        if candidate.is_file():
            return candidate
    return download(pin, cache_dir())


def verify_sha256(path: Path, raw: bytes, pin: DatasetPin) -> None:
    """Raise DatasetError unless ``raw`` (the content of ``path``) has the pinned sha256."""
    actual = hashlib.sha256(raw).hexdigest()
    if actual == pin.sha256:
        return
    if path.parent == cache_dir():
        fix = f"delete {path} and run again to download a fresh copy from {pin.url}"
    else:
        fix = (f"replace {path} with the official release file {pin.url} "
               f"(or remove it so the next location in the search order is used)")
    raise DatasetError(
        f"sha256 mismatch for {path}: expected {pin.sha256}, got {actual}; "
        f"the file is corrupt or not {pin.filename} ({pin.version}). Fix: {fix}"
    )


def download(pin: DatasetPin, directory: Path) -> Path:
    """Download ``pin.url`` into ``directory`` (verified before it takes its final name)."""
    target = directory / pin.filename
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(pin.url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            raw = response.read()
    except OSError as exc:
        raise DatasetError(
            f"{pin.filename} not found locally and the download from {pin.url} failed ({exc}). "
            f"Searched: {', '.join(str(d) for d in candidate_dirs())}. Fix: download it by "
            f"hand and put it in ${ENV_DATASETS_DIR} (or {directory})"
        ) from exc
    actual = hashlib.sha256(raw).hexdigest()
    if actual != pin.sha256:
        raise DatasetError(
            f"sha256 mismatch for {pin.url} (downloaded for {target}): expected {pin.sha256}, "
            f"got {actual}; the download is corrupt or the release asset changed. Fix: retry, "
            f"or put the verified {pin.filename} in ${ENV_DATASETS_DIR}"
        )
    atomic.write_bytes(target, raw)
    return target


def _decompress(path: Path, raw: bytes) -> bytes:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:  # pragma: no cover - sha256 already matched
        raise DatasetError(f"{path} is not a valid gzip file ({exc})") from exc


def iter_records(content: bytes) -> Iterator[dict[str, Any]]:
    """The JSON objects of a decompressed jsonl file, skipping blank lines."""
    for line in content.splitlines():
        if line.strip():
            yield json.loads(line)


def _parse_tasks(path: Path, content: bytes) -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for number, record in enumerate(iter_records(content), start=1):
        try:
            task = Task(
                task_id=str(record["task_id"]), prompt=str(record["prompt"]),
                entry_point=str(record["entry_point"]),
                canonical_solution=str(record["canonical_solution"]),
                atol=float(record.get("atol") or 0), n_base=len(record["base_input"]),
                n_plus=len(record["plus_input"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{path}: record {number} is malformed ({exc!r})") from exc
        tasks[task.task_id] = task
    return tasks
