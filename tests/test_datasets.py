"""plugin.datasets: resolution order, pinned sha256, parsing, download (no network needed)."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from plugin import datasets
from plugin.datasets import PINS, DatasetError, load_dataset

SHARED = datasets.SHARED_DATASETS_DIR
HE_FILE = PINS[("humaneval", False)].filename


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's env dir or cache."""
    monkeypatch.delenv(datasets.ENV_DATASETS_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


def _copy(name: str, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / name
    shutil.copyfile(SHARED / name, target)
    return target


def _corrupt(name: str, directory: Path) -> Path:
    target = _copy(name, directory)
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


def test_humaneval_is_parsed_in_file_order() -> None:
    data = load_dataset("humaneval")
    assert data.name == "humaneval"
    assert data.version == "v0.1.10"
    assert len(data.tasks) == 164
    assert list(data.tasks)[:3] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert data.sha256 == PINS[("humaneval", False)].sha256
    assert data.evalplus_hash == "fe585eb4df8c88d844eeb463ea4d0302"  # evalplus's md5
    task = data.tasks["HumanEval/32"]
    assert task.entry_point == "find_zero"
    assert task.n_base > 0
    assert task.n_plus > 0
    assert sum(t.n_plus for t in data.tasks.values()) == 122_683
    assert task.canonical_program.startswith(task.prompt)


def test_mbpp_and_mini() -> None:
    mbpp = load_dataset("mbpp")
    assert len(mbpp.tasks) == 378
    assert mbpp.version == "v0.2.0"
    assert next(iter(mbpp.tasks)) == "Mbpp/2"
    mini = load_dataset("humaneval", mini=True)
    assert len(mini.tasks) == 164
    assert mini.mini
    assert sum(t.n_plus for t in mini.tasks.values()) == 1_107


def test_sha256_mismatch_names_file_hashes_and_fix(tmp_path: Path) -> None:
    bad = _corrupt(HE_FILE, tmp_path / "mine")
    with pytest.raises(DatasetError) as info:
        load_dataset("humaneval", search_dirs=[bad.parent])
    message = str(info.value)
    assert str(bad) in message
    assert PINS[("humaneval", False)].sha256 in message
    assert "Fix:" in message
    assert PINS[("humaneval", False)].url in message


def test_corrupt_cache_file_says_delete_and_retry(monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setattr(datasets, "SHARED_DATASETS_DIR", tmp_path / "nothing-here")
    bad = _corrupt(HE_FILE, datasets.cache_dir())
    with pytest.raises(DatasetError, match=r"delete .* and run again"):
        load_dataset("humaneval")
    assert bad.exists()


def test_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first, env_dir = tmp_path / "first", tmp_path / "env"
    _copy(HE_FILE, first)
    _copy(HE_FILE, env_dir)
    monkeypatch.setenv(datasets.ENV_DATASETS_DIR, str(env_dir))
    assert load_dataset("humaneval", search_dirs=[first]).path == first / HE_FILE
    assert load_dataset("humaneval").path == env_dir / HE_FILE
    monkeypatch.delenv(datasets.ENV_DATASETS_DIR)
    assert load_dataset("humaneval").path == SHARED / HE_FILE
    assert datasets.candidate_dirs([first]) == [first, SHARED, datasets.cache_dir()]


def test_cache_is_last_before_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(datasets, "SHARED_DATASETS_DIR", tmp_path / "nothing-here")
    cached = _copy(HE_FILE, datasets.cache_dir())
    assert load_dataset("humaneval").path == cached


class _Response(io.BytesIO):
    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_download_is_verified_then_cached(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    monkeypatch.setattr(datasets, "SHARED_DATASETS_DIR", tmp_path / "nothing-here")
    urls: list[str] = []

    def fake_urlopen(url: str, timeout: float) -> Any:
        urls.append(url)
        return _Response((SHARED / HE_FILE).read_bytes())

    monkeypatch.setattr(datasets.urllib.request, "urlopen", fake_urlopen)
    data = load_dataset("humaneval")
    assert urls == [PINS[("humaneval", False)].url]
    assert data.path == datasets.cache_dir() / HE_FILE
    assert len(data.tasks) == 164
    load_dataset("humaneval")
    assert len(urls) == 1  # served from the cache the second time


def test_bad_download_is_not_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(datasets, "SHARED_DATASETS_DIR", tmp_path / "nothing-here")
    monkeypatch.setattr(datasets.urllib.request, "urlopen",
                        lambda url, timeout: _Response(b"<html>not a dataset</html>"))
    with pytest.raises(DatasetError, match=r"sha256 mismatch for https://github\.com/evalplus"):
        load_dataset("humaneval")
    assert not (datasets.cache_dir() / HE_FILE).exists()


def test_unreachable_download_says_where_to_put_the_file(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setattr(datasets, "SHARED_DATASETS_DIR", tmp_path / "nothing-here")

    def offline(url: str, timeout: float) -> Any:
        raise OSError("network is unreachable")

    monkeypatch.setattr(datasets.urllib.request, "urlopen", offline)
    with pytest.raises(DatasetError, match=r"download .* failed .*BENCH_DATASETS_DIR"):
        load_dataset("mbpp")


def test_unknown_names_and_variants() -> None:
    with pytest.raises(DatasetError, match="known datasets: humaneval, mbpp"):
        load_dataset("apps")
    with pytest.raises(DatasetError, match="no mini variant"):
        load_dataset("mbpp", mini=True)


def test_host_never_imports_evalplus_data() -> None:
    """evalplus.data pulls in HF datasets (slow); the host must read the file itself."""
    code = ("import sys; from plugin.datasets import load_dataset; "
            "import plugin.evaluation, plugin.evaluation.cli; load_dataset('mbpp'); "
            "bad = [m for m in ('evalplus.data', 'datasets', 'pytest') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], check=False)
    assert done.returncode == 0, done.stdout + done.stderr
