"""The history database: schema, baselines, trends, merging, concurrent writers."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from plugin.gate import history
from plugin.gate.history import RunRecord, Session, TaskRecord


def _run(session: str, profile: str = "bench-x", plus: int = 3, n: int = 4,
         recorded: str = "2026-11-26T10:00:00Z", machine: str = "hostA x86_64 2 cores",
         fingerprint: str = "fp1") -> tuple[RunRecord, list[TaskRecord]]:
    run_id = history.run_id_for(session, machine, profile, "humaneval")
    tasks = [TaskRecord(f"HumanEval/{i}", "pass", "pass" if i < plus else "fail",
                        finish_reason="stop", completion_tokens=10, wall_s=0.1)
             for i in range(n)]
    row = {"run_id": run_id, "profile": profile, "dataset": "humaneval", "plus_passed": plus}
    return RunRecord(
        id=run_id, session=session, machine=machine, started=recorded, recorded=recorded,
        profile=profile, dataset="humaneval", fingerprint=fingerprint, build="b1",
        n_tasks=n, partial=False, base_passed=n, plus_passed=plus,
        base_pass_at_1=100.0, plus_pass_at_1=round(100 * plus / n, 2), gate="pass",
        stats={"gen_tokens_per_s": 50.0}, timings={"gen_wall_s": 1.0}, row=row), tasks


def _store(path: Path, session: str, **kw: object) -> str:
    run, tasks = _run(session, **kw)  # type: ignore[arg-type]
    with history.opened(path) as conn, history.transaction(conn):
        history.record_session(conn, Session(session, run.machine, run.recorded))
        history.record_run(conn, run, tasks)
    return run.id


def test_schema_wal_and_version(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "history.sqlite"
    with history.opened(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT value FROM meta").fetchone()[0] == "1"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"sessions", "runs", "tasks", "baselines"} <= tables


def test_baseline_is_the_latest_pin_with_its_tasks(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    first = _store(path, "s1", plus=3)
    second = _store(path, "s2", plus=2, recorded="2026-11-26T11:00:00Z", fingerprint="fp2")
    with history.opened(path) as conn:
        assert history.baseline(conn, "bench-x", "humaneval") is None
        with history.transaction(conn):
            history.pin_baseline(conn, first, pinned_by="s1")
        base = history.baseline(conn, "bench-x", "humaneval")
        assert base is not None
        assert base.run_id == first
        assert base.fingerprint == "fp1"
        assert base.passed == {"HumanEval/0": True, "HumanEval/1": True, "HumanEval/2": True,
                               "HumanEval/3": False}
        with history.transaction(conn):
            history.pin_baseline(conn, second, pinned_by="s2")
        base = history.baseline(conn, "bench-x", "humaneval")
        assert base is not None
        assert base.run_id == second
        assert base.plus_pass_at_1 == 50.0
        assert [b["run_id"] for b in history.baselines(conn)] == [second]
        with pytest.raises(KeyError, match="no run"):
            history.pin_baseline(conn, "nope", pinned_by="x")


def test_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    run, tasks = _run("s1")
    with history.opened(path) as conn:
        with pytest.raises(sqlite3.IntegrityError), history.transaction(conn):
            history.record_run(conn, run, [*tasks, tasks[0]])  # duplicate task: fails
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_rerecording_a_run_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    _store(path, "s1", plus=3)
    _store(path, "s1", plus=1)
    with history.opened(path) as conn:
        assert conn.execute("SELECT COUNT(*), MAX(plus_passed) FROM runs").fetchone()[:] == (1, 1)
        assert conn.execute("SELECT SUM(passed) FROM tasks").fetchone()[0] == 1


def test_trend_sessions_and_rows(tmp_path: Path) -> None:
    path = tmp_path / "h.sqlite"
    _store(path, "s1", plus=3, recorded="2026-11-26T10:00:00Z")
    _store(path, "s2", plus=2, recorded="2026-11-26T12:00:00Z")
    _store(path, "s2", profile="bench-y", plus=4, recorded="2026-11-26T12:00:01Z")
    with history.opened(path) as conn:
        assert history.latest_session(conn) == "s2"
        assert [r["profile"] for r in history.session_rows(conn, "s2")] == ["bench-x", "bench-y"]
        points = history.trend(conn)[("bench-x", "humaneval")]
        assert [p.plus_passed for p in points] == [3, 2]
        early = history.trend(conn, up_to="2026-11-26T11:00:00Z")
        assert list(early) == [("bench-x", "humaneval")]
        assert [s.session for s in history.sessions(conn)] == ["s1", "s2"]


def _writer(args: tuple[str, int]) -> int:
    path, worker = args
    for i in range(8):
        _store(Path(path), f"s{worker}", profile=f"bench-{worker}-{i}")
    return worker


def test_concurrent_writers_from_processes(tmp_path: Path) -> None:
    """xdist workers write at the same time: WAL + busy timeout, nothing lost."""
    path = tmp_path / "h.sqlite"
    history.connect(path).close()
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert sorted(pool.map(_writer, [(str(path), w) for w in range(4)])) == [0, 1, 2, 3]
    with history.opened(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 32
        assert conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 32 * 4


def test_merge_is_idempotent_and_keeps_pins(tmp_path: Path) -> None:
    a, b, merged = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "m.sqlite"
    run_a = _store(a, "ci-1", machine="gpu-1 x86_64 32 cores")
    _store(b, "ci-1", machine="gpu-2 x86_64 32 cores")
    with history.opened(a) as conn, history.transaction(conn):
        history.pin_baseline(conn, run_a, pinned_by="ci-1", pinned_at="2026-11-26T10:00:00Z")
    with history.opened(merged) as conn:
        assert history.merge(conn, a) == 1
        assert history.merge(conn, b) == 1
        assert history.merge(conn, a) == 0  # again: nothing new
        assert len(history.session_rows(conn, "ci-1")) == 2
        assert conn.execute("SELECT COUNT(*) FROM baselines").fetchone()[0] == 1
        base = history.baseline(conn, "bench-x", "humaneval")
        assert base is not None
        assert base.run_id == run_a
