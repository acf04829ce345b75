"""What changed between two runs: the differences of their fingerprint inputs, in words.

A run stores what its fingerprint was computed from (runner.fingerprint_inputs: image,
model file, server flags, sampling, prompt template, dataset). Two runs with different
fingerprints differ in some of these; ``what_changed`` names them, e.g.
``max_tokens 768 -> 430`` or ``image sha256:1a2b3c4d5e6f -> sha256:0f9e8d7c6b5a``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Flattened keys that read better under another name.
_NAMES = {
    "backend.image_id": "image",
    "backend.build_info": "build",
    "backend.ctx": "ctx_size",
    "backend.ngl": "n_gpu_layers",
    "backend.extra_args": "EXTRA_ARGS",
    "backend.model_path": "model",
    "prompt_template": "prompt template",
    "dataset_sha256": "dataset sha256",
}
_HEX = re.compile(r"^(sha256:)?[0-9a-f]{32,}$")
_VALUE_CHARS = 80


def flatten(inputs: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"sampling": {"max_tokens": 768}}`` -> ``{"sampling.max_tokens": 768}``; a model's
    file list becomes ``model <file> sha256`` / ``size`` / ``mtime_ns`` entries."""
    flat: dict[str, Any] = {}
    for key, value in inputs.items():
        path = f"{prefix}{key}"
        if path == "backend.model" and isinstance(value, Mapping):
            for part in value.get("files") or []:
                for attr in ("sha256", "size", "mtime_ns"):
                    flat[f"model {part.get('file')} {attr}"] = part.get(attr)
        elif isinstance(value, Mapping):
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def _name(key: str) -> str:
    if key in _NAMES:
        return _NAMES[key]
    for prefix in ("sampling.", "backend."):
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        value = " ".join(str(v) for v in value) or "(none)"
    text = str(value)
    if _HEX.match(text):
        return text[:19] if text.startswith("sha256:") else text[:12]
    return text if len(text) <= _VALUE_CHARS else text[:_VALUE_CHARS] + "..."


def what_changed(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None,
                 ) -> list[str] | None:
    """``["max_tokens 768 -> 430", ...]`` from ``before`` to ``after``; [] when nothing
    differs, None when either side's inputs were not stored."""
    if not before or not after:
        return None
    old, new = flatten(before), flatten(after)
    changes = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            changes.append(f"{_name(key)} {_show(old.get(key))} -> {_show(new.get(key))}")
    return changes
