"""The per-user cache folder: ``$BENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/llama-bench``
(default ``~/.cache/llama-bench``). Holds dataset downloads (``datasets/``), model file
hashes (``model-hashes.json``) and the ground-truth oracles (``oracles/``)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_CACHE_DIR = "BENCH_CACHE_DIR"


def cache_root() -> Path:
    explicit = os.environ.get(ENV_CACHE_DIR)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "llama-bench"
