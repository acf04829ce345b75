"""Whole-file writes that an interruption cannot leave half done.

:func:`write_text` / :func:`write_bytes` write a temp file in the target's folder, fsync
it, and rename it over the target (``os.replace``, atomic on POSIX); the folder is
fsynced too, so the rename survives a power cut. Readers see the old file or the new
one, never a part of one. A writer interrupted by an exception (Ctrl-C, a pytest-timeout
``Failed``) removes its temp file; only a process killed in the middle of the write
(SIGKILL) leaves a hidden ``.<name>.<pid>.<random>.tmp`` behind.

Every whole-file result the harness writes goes through here (summary.json, samples.jsonl,
eval_results.json, REPORT.md, summary.html, downloaded datasets, the model-hash cache).
The journals (completions.jsonl, verdicts.jsonl) are appended to instead, one record per
line; their readers skip a line cut short.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK  # what open() would give a new file


def write_text(path: Path, text: str, *, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text``, atomically (see the module docstring)."""
    write_bytes(path, text.encode(encoding))


def write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``, atomically (see the module docstring)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), _FILE_MODE)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # some file systems refuse to open folders
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
