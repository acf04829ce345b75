"""The run history: an embedded SQLite database (``reports/history.sqlite``).

Every profile x dataset result is stored when it is computed, with its per-task verdicts;
baselines, trends and flips are read back from here, and ``python -m plugin report``
rebuilds every report from it without running anything.

Concurrency: pytest-xdist workers write to the same file. The database runs in WAL mode
with a busy timeout, and each write (read the baseline, judge, store the run and its
tasks, pin) is one ``BEGIN IMMEDIATE`` transaction, so a writer either sees a complete
run or none, and two workers never interleave.

Tables:
    sessions   one pytest session on one machine: its start, argv, and the published
               scores it reported against (a snapshot, so old reports rebuild as written)
    runs       one profile x dataset result: fingerprint, build, pass@1s, stats, timings,
               the gate's verdict and the full report row (JSON)
    tasks      per task of a run: base/plus status, passed, finish_reason, tokens, wall;
               for tasks that flipped against the baseline also the code and failing input
    baselines  pins (append-only log): the latest pin per profile x dataset is the
               baseline; each names the run it pins (run id + fingerprint = provenance)
"""

from __future__ import annotations

import contextlib
import datetime
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin.gate import programs
from plugin.gate.record import Row
from plugin.gate.references import Baseline
from plugin.gate.stats import task_sort_key

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 120_000

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS sessions (
        session TEXT NOT NULL, machine TEXT NOT NULL, started TEXT NOT NULL,
        argv TEXT NOT NULL DEFAULT '', published_json TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (session, machine))""",
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY, session TEXT NOT NULL, machine TEXT NOT NULL,
        started TEXT NOT NULL, recorded TEXT NOT NULL,
        profile TEXT NOT NULL, dataset TEXT NOT NULL, fingerprint TEXT NOT NULL,
        build TEXT NOT NULL DEFAULT '', n_tasks INTEGER NOT NULL, partial INTEGER NOT NULL,
        base_passed INTEGER NOT NULL, plus_passed INTEGER NOT NULL,
        base_pass_at_1 REAL NOT NULL, plus_pass_at_1 REAL NOT NULL,
        gate TEXT NOT NULL, stats_json TEXT NOT NULL, timings_json TEXT NOT NULL,
        row_json TEXT NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS runs_by_profile ON runs (profile, dataset, recorded)""",
    """CREATE INDEX IF NOT EXISTS runs_by_session ON runs (session)""",
    """CREATE TABLE IF NOT EXISTS tasks (
        run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
        task_id TEXT NOT NULL, base TEXT NOT NULL, plus TEXT NOT NULL,
        passed INTEGER NOT NULL, finish_reason TEXT, completion_tokens INTEGER,
        reasoning_tokens INTEGER, wall_s REAL, flip TEXT, solution TEXT, fail_input TEXT,
        PRIMARY KEY (run_id, task_id))""",
    """CREATE TABLE IF NOT EXISTS baselines (
        id INTEGER PRIMARY KEY AUTOINCREMENT, profile TEXT NOT NULL, dataset TEXT NOT NULL,
        run_id TEXT NOT NULL REFERENCES runs (id), fingerprint TEXT NOT NULL,
        pinned_at TEXT NOT NULL, pinned_by TEXT NOT NULL)""",
)


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# ------------------------------------------------------------------------ connection


def connect(path: Path) -> sqlite3.Connection:
    """Open (and create) the history database: WAL, busy timeout, autocommit mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA foreign_keys = ON")
    with transaction(conn):
        for statement in (*SCHEMA, *programs.SCHEMA):
            conn.execute(statement)
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                     (str(SCHEMA_VERSION),))
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken up front (no lock upgrade, no deadlock)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextlib.contextmanager
def opened(path: Path) -> Iterator[sqlite3.Connection]:
    conn = connect(path)
    try:
        yield conn
    finally:
        conn.close()


# ------------------------------------------------------------------------ records


@dataclass(frozen=True)
class Session:
    session: str
    machine: str
    started: str
    argv: str = ""
    published: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True)
class TaskRecord:
    task_id: str
    base: str
    plus: str
    finish_reason: str | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    wall_s: float | None = None
    flip: str | None = None  # "pass->fail" | "fail->pass" against the baseline
    solution: str | None = None  # kept for flipped tasks only
    fail_input: str | None = None

    @property
    def passed(self) -> bool:
        """EvalPlus's plus pass: base and plus tests both pass."""
        return self.base == "pass" and self.plus == "pass"


@dataclass(frozen=True)
class RunRecord:
    """One result as stored; ``row`` is the report row (every column of every report)."""

    id: str
    session: str
    machine: str
    started: str
    recorded: str
    profile: str
    dataset: str
    fingerprint: str
    build: str
    n_tasks: int
    partial: bool
    base_passed: int
    plus_passed: int
    base_pass_at_1: float
    plus_pass_at_1: float
    gate: str
    stats: Mapping[str, Any]
    timings: Mapping[str, Any]
    row: Mapping[str, Any]


def run_id_for(session: str, machine: str, profile: str, dataset: str) -> str:
    host = machine.split(" ", 1)[0] or "host"
    return f"{session}/{host}/{profile}/{dataset}"


def record_session(conn: sqlite3.Connection, session: Session) -> None:
    conn.execute("INSERT OR IGNORE INTO sessions VALUES (?, ?, ?, ?, ?)",
                 (session.session, session.machine, session.started, session.argv,
                  json.dumps(list(session.published), sort_keys=True)))


def record_run(conn: sqlite3.Connection, run: RunRecord, tasks: Sequence[TaskRecord]) -> None:
    """Store (or replace: the same session may compute a result twice) a run and its tasks."""
    conn.execute("DELETE FROM tasks WHERE run_id = ?", (run.id,))
    conn.execute(
        "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
        "?, ?)",
        (run.id, run.session, run.machine, run.started, run.recorded, run.profile,
         run.dataset, run.fingerprint, run.build, run.n_tasks, int(run.partial),
         run.base_passed, run.plus_passed, run.base_pass_at_1, run.plus_pass_at_1, run.gate,
         json.dumps(run.stats, sort_keys=True), json.dumps(run.timings, sort_keys=True),
         json.dumps(run.row, sort_keys=True)))
    conn.executemany(
        "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(run.id, t.task_id, t.base, t.plus, int(t.passed), t.finish_reason,
          t.completion_tokens, t.reasoning_tokens, t.wall_s, t.flip, t.solution, t.fail_input)
         for t in tasks])


def pin_baseline(conn: sqlite3.Connection, run_id: str, pinned_by: str,
                 pinned_at: str | None = None) -> None:
    row = conn.execute("SELECT profile, dataset, fingerprint FROM runs WHERE id = ?",
                       (run_id,)).fetchone()
    if row is None:
        raise KeyError(f"no run {run_id!r} in the history")
    conn.execute("INSERT INTO baselines (profile, dataset, run_id, fingerprint, pinned_at, "
                 "pinned_by) VALUES (?, ?, ?, ?, ?, ?)",
                 (row["profile"], row["dataset"], run_id, row["fingerprint"],
                  pinned_at or now_utc(), pinned_by))


def baseline(conn: sqlite3.Connection, profile: str, dataset: str) -> Baseline | None:
    """The pinned baseline of profile x dataset (latest pin), with its per-task verdicts."""
    pin = conn.execute("SELECT run_id, pinned_at FROM baselines WHERE profile = ? AND "
                       "dataset = ? ORDER BY id DESC LIMIT 1", (profile, dataset)).fetchone()
    if pin is None:
        return None
    run = conn.execute("SELECT * FROM runs WHERE id = ?", (pin["run_id"],)).fetchone()
    if run is None:
        return None
    passed = {r["task_id"]: bool(r["passed"]) for r in
              conn.execute("SELECT task_id, passed FROM tasks WHERE run_id = ?", (run["id"],))}
    return Baseline(run_id=run["id"], fingerprint=run["fingerprint"],
                    plus_pass_at_1=run["plus_pass_at_1"], n_tasks=run["n_tasks"],
                    partial=bool(run["partial"]), passed=passed, pinned_at=pin["pinned_at"])


def baselines(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Current pins, one per profile x dataset, for `python -m plugin report --baselines`."""
    pairs = conn.execute("SELECT DISTINCT profile, dataset FROM baselines "
                         "ORDER BY profile, dataset").fetchall()
    pins = []
    for profile, dataset in pairs:
        found = baseline(conn, profile, dataset)
        if found is None:  # the pinned run is not in this database
            continue
        tasks = sorted(found.passed, key=task_sort_key)
        pins.append({  # also the form of reference-scores.json's baselines.<dataset>
            "profile": profile, "dataset": dataset, "run_id": found.run_id,
            "fingerprint": found.fingerprint, "pinned_at": found.pinned_at,
            "plus_pass_at_1": found.plus_pass_at_1, "n_tasks": found.n_tasks,
            "partial": found.partial, "recorded": found.pinned_at, "tasks": tasks,
            "passed": [t for t in tasks if found.passed[t]]})
    return pins


# ------------------------------------------------------------------------ reading


def sessions(conn: sqlite3.Connection) -> list[Session]:
    rows = conn.execute("SELECT * FROM sessions ORDER BY started, session, machine")
    return [Session(session=r["session"], machine=r["machine"], started=r["started"],
                    argv=r["argv"], published=tuple(json.loads(r["published_json"])))
            for r in rows]


def latest_session(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT session FROM runs ORDER BY recorded DESC, rowid DESC "
                       "LIMIT 1").fetchone()
    return None if row is None else str(row["session"])


def session_rows(conn: sqlite3.Connection, session: str) -> list[Row]:
    """The report rows of one session, in the order they were recorded."""
    rows = conn.execute("SELECT row_json FROM runs WHERE session = ? ORDER BY recorded, rowid",
                        (session,))
    return [Row.from_json(json.loads(r["row_json"])) for r in rows]


def run_row(conn: sqlite3.Connection, run_id: str) -> Row | None:
    """The report row of one run, or None when the run is not in this database."""
    found = conn.execute("SELECT row_json FROM runs WHERE id = ?", (run_id,)).fetchone()
    return None if found is None else Row.from_json(json.loads(found["row_json"]))


def session_published(conn: sqlite3.Connection, session: str) -> list[dict[str, Any]]:
    """Published scores the session reported against (first machine's snapshot)."""
    row = conn.execute("SELECT published_json FROM sessions WHERE session = ? "
                       "ORDER BY started, machine LIMIT 1", (session,)).fetchone()
    return [] if row is None else list(json.loads(row["published_json"]))


@dataclass(frozen=True)
class TrendPoint:
    run_id: str
    session: str
    started: str
    machine: str
    plus_passed: int
    n_tasks: int
    plus_pass_at_1: float
    partial: bool
    gate: str
    tokens_per_s: float | None
    pinned: bool
    fingerprint: str = ""


def trend(conn: sqlite3.Connection, up_to: str | None = None,
          ) -> dict[tuple[str, str], list[TrendPoint]]:
    """Every run per (profile, dataset), oldest first (runs recorded up to ``up_to``)."""
    sql = ("SELECT runs.*, id IN (SELECT run_id FROM baselines) AS pinned FROM runs")
    args: tuple[str, ...] = ()
    if up_to is not None:
        sql += " WHERE recorded <= ?"
        args = (up_to,)
    out: dict[tuple[str, str], list[TrendPoint]] = {}
    for r in conn.execute(sql + " ORDER BY recorded, rowid", args):
        stats = json.loads(r["stats_json"])
        out.setdefault((r["profile"], r["dataset"]), []).append(TrendPoint(
            run_id=r["id"], session=r["session"], started=r["started"], machine=r["machine"],
            plus_passed=r["plus_passed"], n_tasks=r["n_tasks"],
            plus_pass_at_1=r["plus_pass_at_1"], partial=bool(r["partial"]), gate=r["gate"],
            tokens_per_s=stats.get("gen_tokens_per_s"), pinned=bool(r["pinned"]),
            fingerprint=r["fingerprint"]))
    return out


def session_end(conn: sqlite3.Connection, session: str) -> str | None:
    row = conn.execute("SELECT MAX(recorded) AS m FROM runs WHERE session = ?",
                       (session,)).fetchone()
    return None if row is None else row["m"]


# ------------------------------------------------------------------------ merging


def merge(dest: sqlite3.Connection, source: Path) -> int:
    """Copy the sessions, runs, tasks and pins of another history file; returns new runs.

    Runs are keyed by id (session/host/profile/dataset), so merging the same file twice
    changes nothing. Pins are appended in their original order.
    """
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    src.row_factory = sqlite3.Row
    try:
        with transaction(dest):
            before = dest.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            for r in src.execute("SELECT * FROM sessions"):
                dest.execute("INSERT OR IGNORE INTO sessions VALUES (?, ?, ?, ?, ?)", tuple(r))
            for r in src.execute("SELECT * FROM runs"):
                dest.execute("INSERT OR IGNORE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                             "?, ?, ?, ?, ?, ?, ?, ?, ?)", tuple(r))
            for r in src.execute("SELECT * FROM tasks"):
                dest.execute("INSERT OR IGNORE INTO tasks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                             "?, ?)", tuple(r))
            programs.merge(dest, src)
            for r in src.execute("SELECT * FROM baselines ORDER BY id"):
                seen = dest.execute("SELECT 1 FROM baselines WHERE run_id = ? AND pinned_at = ?",
                                    (r["run_id"], r["pinned_at"])).fetchone()
                if seen is None:
                    dest.execute("INSERT INTO baselines (profile, dataset, run_id, fingerprint, "
                                 "pinned_at, pinned_by) VALUES (?, ?, ?, ?, ?, ?)",
                                 (r["profile"], r["dataset"], r["run_id"], r["fingerprint"],
                                  r["pinned_at"], r["pinned_by"]))
            after = dest.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        src.close()
    return int(after) - int(before)
