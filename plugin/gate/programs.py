"""The programs each run judged, kept in the history so that any two runs can be diffed.

Two tables beside history.py's: ``programs`` holds each distinct program once (keyed by
its sha256: an unchanged re-run adds no text), ``task_programs`` says which program a
run's task judged. A flip is then shown as a diff of the baseline run's program against
the current one (report.html, ``report --compare``).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Mapping

# A program longer than this is kept cut (a rambling model's answer can be huge).
PROGRAM_CHARS = 8000

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS programs (
        sha256 TEXT PRIMARY KEY, text TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS task_programs (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE, task_id TEXT NOT NULL,
        sha256 TEXT NOT NULL, PRIMARY KEY (run_id, task_id))""",
)


def record(conn: sqlite3.Connection, run_id: str, programs: Mapping[str, str]) -> None:
    """Store the programs of a run (task id -> program), replacing what it had."""
    conn.execute("DELETE FROM task_programs WHERE run_id = ?", (run_id,))
    rows = []
    for task_id, text in programs.items():
        kept = text[:PROGRAM_CHARS]
        digest = hashlib.sha256(kept.encode("utf-8")).hexdigest()
        conn.execute("INSERT OR IGNORE INTO programs VALUES (?, ?)", (digest, kept))
        rows.append((run_id, task_id, digest))
    conn.executemany("INSERT INTO task_programs VALUES (?, ?, ?)", rows)


def of_run(conn: sqlite3.Connection, run_id: str,
           task_ids: Iterable[str] | None = None) -> dict[str, str]:
    """Task id -> program of a run (all tasks, or ``task_ids``); {} for runs stored
    before programs were kept."""
    wanted = None if task_ids is None else set(task_ids)
    found = conn.execute("SELECT task_programs.task_id, programs.text FROM task_programs "
                         "JOIN programs ON programs.sha256 = task_programs.sha256 "
                         "WHERE task_programs.run_id = ?", (run_id,))
    return {r[0]: r[1] for r in found if wanted is None or r[0] in wanted}


def merge(dest: sqlite3.Connection, src: sqlite3.Connection) -> None:
    """Copy the programs of another history file (one without them is skipped)."""
    tables = {r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"programs", "task_programs"} <= tables:
        return
    for r in src.execute("SELECT sha256, text FROM programs"):
        dest.execute("INSERT OR IGNORE INTO programs VALUES (?, ?)", tuple(r))
    for r in src.execute("SELECT run_id, task_id, sha256 FROM task_programs"):
        dest.execute("INSERT OR IGNORE INTO task_programs VALUES (?, ?, ?)", tuple(r))


def flip_details(conn: sqlite3.Connection, run_id: str,
                 baseline_run: str | None) -> list[dict[str, object]]:
    """The tasks of ``run_id`` that flipped against its baseline, each with both runs'
    finish_reason and token count, both programs and the first failing input."""
    flipped = [dict(r) for r in conn.execute(
        "SELECT task_id, base, plus, flip, solution, fail_input, finish_reason, "
        "completion_tokens FROM tasks WHERE run_id = ? AND flip IS NOT NULL", (run_id,))]
    if not flipped:
        return []
    ids = [f["task_id"] for f in flipped]
    before_tasks = {} if baseline_run is None else {r[0]: r[1:] for r in conn.execute(
        "SELECT task_id, finish_reason, completion_tokens FROM tasks WHERE run_id = ?",
        (baseline_run,))}
    now_programs = of_run(conn, run_id, ids)
    before_programs = {} if baseline_run is None else of_run(conn, baseline_run, ids)
    for f in flipped:
        task = str(f["task_id"])
        f["program"] = now_programs.get(task, f["solution"])
        f["baseline_program"] = before_programs.get(task)
        f["baseline_finish_reason"], f["baseline_completion_tokens"] = \
            before_tasks.get(task, (None, None))
    return flipped
