"""Any two runs of the history, compared task by task (``python -m plugin report --compare``).

    python -m plugin report --list                      # the runs in the history
    python -m plugin report --compare RUN_A RUN_B       # A is the "before", B the "after"

A run is named by its id or by a unique part of it (``--list`` shows them). The
comparison covers the tasks both runs judged: flips both ways, the exact McNemar p of
those flips (the gate's test), what changed between the runs' fingerprint inputs, and per
flipped task both finish_reasons and token counts. It is printed as markdown and written
to ``compare-<A>-vs-<B>.md`` and ``.html`` in the reports directory.
"""

from __future__ import annotations

import html
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin import atomic
from plugin.gate import history
from plugin.gate.changes import what_changed
from plugin.gate.record import Row
from plugin.gate.stats import Paired, paired_compare, task_sort_key


@dataclass(frozen=True)
class Comparison:
    before: Row
    after: Row
    paired: Paired
    changed: list[str] | None
    tasks_before: Mapping[str, Mapping[str, Any]]
    tasks_after: Mapping[str, Mapping[str, Any]]


def list_runs(conn: sqlite3.Connection) -> list[str]:
    """One line per run, oldest first: id, recorded, plus pass@1, tasks, gate."""
    lines = []
    for r in conn.execute("SELECT id, recorded, plus_passed, n_tasks, plus_pass_at_1, gate, "
                          "partial FROM runs ORDER BY recorded, rowid"):
        part = ", partial" if r["partial"] else ""
        lines.append(f"{r['id']}  {r['recorded']}  plus {r['plus_pass_at_1']:.1f}% "
                     f"({r['plus_passed']}/{r['n_tasks']}{part})  gate {r['gate']}")
    return lines


def resolve(conn: sqlite3.Connection, name: str) -> str:
    """The id of the run ``name`` names: its id, or a part of exactly one id."""
    ids = [str(r["id"]) for r in conn.execute("SELECT id FROM runs ORDER BY recorded, rowid")]
    if name in ids:
        return name
    found = [i for i in ids if name in i]
    if len(found) == 1:
        return found[0]
    what = "no run" if not found else f"{len(found)} runs ({', '.join(found[:4])}...)"
    raise LookupError(f"{name!r} names {what}; fix: pass a run id from "
                      "`python -m plugin report --list`")


def _tasks(conn: sqlite3.Connection, run_id: str) -> dict[str, dict[str, Any]]:
    return {r["task_id"]: dict(r) for r in conn.execute(
        "SELECT task_id, base, plus, passed, finish_reason, completion_tokens FROM tasks "
        "WHERE run_id = ?", (run_id,))}


def compare(conn: sqlite3.Connection, a: str, b: str) -> Comparison:
    ids = resolve(conn, a), resolve(conn, b)
    rows = [history.run_row(conn, run_id) for run_id in ids]
    if rows[0] is None or rows[1] is None:  # pragma: no cover - resolve found them
        raise LookupError("a run vanished from the history while reading it")
    tasks = [_tasks(conn, run_id) for run_id in ids]
    paired = paired_compare({t: bool(v["passed"]) for t, v in tasks[0].items()},
                            {t: bool(v["passed"]) for t, v in tasks[1].items()})
    return Comparison(before=rows[0], after=rows[1], paired=paired,
                      changed=what_changed(rows[0].fingerprint_inputs,
                                           rows[1].fingerprint_inputs),
                      tasks_before=tasks[0], tasks_after=tasks[1])


def _finish(task: Mapping[str, Any] | None) -> str:
    if task is None:
        return "-"
    tokens = task.get("completion_tokens")
    return f"{task.get('finish_reason') or '?'}, {tokens if tokens is not None else '?'} tok"


def _flip_rows(c: Comparison) -> list[list[str]]:
    flips = [(t, "pass->fail") for t in c.paired.regressed] + \
            [(t, "fail->pass") for t in c.paired.fixed]
    rows = []
    for task, flip in sorted(flips, key=lambda f: task_sort_key(f[0])):
        after = c.tasks_after.get(task) or {}
        clock = (c.after.clock_decided or {}).get(task) or \
            (c.before.clock_decided or {}).get(task) or "no"
        rows.append([task, flip, f"{after.get('base')}/{after.get('plus')}",
                     _finish(c.tasks_before.get(task)), _finish(after), clock])
    return rows


FLIP_HEADER = ["Task", "Flip", "after: base/plus", "before: finish, tokens",
               "after: finish, tokens", "decided by the clock"]


def _summary_lines(c: Comparison) -> list[str]:
    p = c.paired
    changed = ("; ".join(c.changed) or "nothing") if c.changed is not None else \
        "not known (a run's fingerprint inputs were not stored)"
    return [
        f"- before: `{c.before.run_id}`: plus {c.before.plus_pass_at_1:.1f}% "
        f"({c.before.plus_passed}/{c.before.n_tasks}), fingerprint {c.before.fingerprint}",
        f"- after: `{c.after.run_id}`: plus {c.after.plus_pass_at_1:.1f}% "
        f"({c.after.plus_passed}/{c.after.n_tasks}), fingerprint {c.after.fingerprint}",
        f"- tasks both judged: {p.n_common}; pass->fail {p.b}, fail->pass {p.c}; exact "
        f"McNemar p = {p.p_value:.3g}",
        f"- what changed: {changed}",
    ]


def markdown(c: Comparison) -> str:
    lines = [f"# {c.before.profile} ({c.before.dataset}) vs {c.after.profile} "
             f"({c.after.dataset})", "", *_summary_lines(c), ""]
    flips = _flip_rows(c)
    if flips:
        lines += ["| " + " | ".join(FLIP_HEADER) + " |",
                  "|" + "|".join("---" for _ in FLIP_HEADER) + "|"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
                  for row in flips]
    else:
        lines.append("No task flipped.")
    return "\n".join(lines) + "\n"


def html_page(c: Comparison) -> str:
    esc = html.escape
    items = "".join(f"<li>{esc(line[2:])}</li>" for line in _summary_lines(c))
    head = "".join(f"<th>{esc(h)}</th>" for h in FLIP_HEADER)
    body = "".join("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>"
                   for row in _flip_rows(c))
    table = f"<table><tr>{head}</tr>{body}</table>" if body else "<p>No task flipped.</p>"
    title = esc(f"{c.before.run_id} vs {c.after.run_id}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
            "<style>body{font-family:sans-serif}td,th{border:1px solid #999;padding:2px 6px}"
            f"table{{border-collapse:collapse}}</style></head><body><h1>{title}</h1>"
            f"<ul>{items}</ul>{table}</body></html>\n")


def write(c: Comparison, out: Path) -> Sequence[Path]:
    def slug(run_id: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", run_id)

    stem = out / f"compare-{slug(c.before.run_id)}-vs-{slug(c.after.run_id)}"
    out.mkdir(parents=True, exist_ok=True)
    md, page = Path(f"{stem}.md"), Path(f"{stem}.html")
    atomic.write_text(md, markdown(c))
    atomic.write_text(page, html_page(c))
    return md, page
