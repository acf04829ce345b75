"""plugin.atomic: whole-file writes are all or nothing, and leave no temp file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from plugin import atomic


def test_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    target.write_text("old")
    atomic.write_text(target, '{"new": true}')
    assert target.read_text() == '{"new": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    target = tmp_path / "REPORT.md"
    atomic.write_bytes(target, b"# report\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, OSError])
def test_an_interrupted_write_keeps_the_old_file_and_no_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        interruption: type[BaseException]) -> None:
    """Ctrl-C (or a full disk) after part of the data is written, before the rename."""
    target = tmp_path / "samples.jsonl"
    target.write_text('{"task_id": "HumanEval/0"}\n')

    def fsync(fd: int) -> None:
        raise interruption()

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(interruption):
        atomic.write_text(target, '{"task_id": "HumanEval/0", "solution": "cut short')
    assert target.read_text() == '{"task_id": "HumanEval/0"}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["samples.jsonl"]


def test_the_temp_file_lives_next_to_the_target(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Same folder, so the rename never crosses a file system; hidden, named after the
    target and the writer's pid."""
    seen: list[str] = []
    replace = os.replace

    def spy(src: str, dst: Path) -> None:
        seen.append(src)
        replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic.write_text(tmp_path / "eval_results.json", "{}")
    (src,) = seen
    assert Path(src).parent == tmp_path
    assert Path(src).name.startswith(f".eval_results.json.{os.getpid()}.")
    assert src.endswith(".tmp")
