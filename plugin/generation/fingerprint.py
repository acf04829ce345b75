"""Fingerprints: a short hash of everything that can change a model's answers.

A run's completions are stored under its fingerprint; an equal fingerprint means the
stored answers are still valid and no request is sent again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plugin import atomic
from plugin.cache import cache_root
from plugin.config.profile import shard_files

_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_identity(model_path: Path, cache: Path | None = None) -> dict[str, Any]:
    """Size, mtime and sha256 of the model file (and its split shards).

    The hash of a many-GB file takes a while, so it is cached keyed by path, size and
    mtime: a file touched or replaced is hashed again.
    """
    shards = shard_files(model_path)
    cache_file = (cache or cache_root()) / "model-hashes.json"
    known = _read_json(cache_file)
    parts = []
    changed = False
    for shard in shards:
        stat = shard.stat()
        key = f"{shard.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        if key not in known:
            known[key] = file_sha256(shard)
            changed = True
        parts.append({"file": shard.name, "size": stat.st_size,
                      "mtime_ns": stat.st_mtime_ns, "sha256": known[key]})
    if changed:
        _write_json(cache_file, known)
    return {"files": parts}


def unhashed_bytes(model_path: Path, cache: Path | None = None) -> int:
    """Bytes of the model's files whose sha256 model_identity() would compute now (not
    cached yet): 0 once a file has been hashed."""
    known = _read_json((cache or cache_root()) / "model-hashes.json")
    total = 0
    for shard in shard_files(model_path):
        stat = shard.stat()
        if f"{shard.resolve()}|{stat.st_size}|{stat.st_mtime_ns}" not in known:
            total += stat.st_size
    return total


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, json.dumps(data, indent=1, sort_keys=True))


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fingerprint(fields: Mapping[str, Any]) -> str:
    """16 hex digits of the sha256 of the canonical JSON of ``fields``."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
