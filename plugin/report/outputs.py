"""The report files of a run: REPORT.md, summary.json, summary.html."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plugin import atomic
from plugin.gate import history
from plugin.gate.record import Row, sorted_rows
from plugin.gate.references import Published, published_from_json
from plugin.report.html import summary_page
from plugin.report.text import markdown_report

# Version of summary.json's layout (docs/REPORTS.md): bumped when a key changes meaning or
# goes away; new keys may appear without a bump. 1 had no "schema_version" key.
SUMMARY_SCHEMA_VERSION = 2


def summary_json(session: str, rows: Sequence[Row],
                 unscored: Sequence[Mapping[str, str]] = ()) -> str:
    return json.dumps({"schema_version": SUMMARY_SCHEMA_VERSION, "run_id": session,
                       "results": [r.to_json() for r in sorted_rows(rows)],
                       "unscored": sorted(unscored, key=lambda u: (u["profile"], u["dataset"]))},
                      indent=1, sort_keys=True) + "\n"


def trend_for_plot(trend: Mapping[tuple[str, str], Sequence[history.TrendPoint]],
                   ) -> dict[str, list[dict[str, Any]]]:
    return {f"{p} ({d})": [{"plus_pass_at_1": t.plus_pass_at_1, "plus_passed": t.plus_passed,
                            "n_tasks": t.n_tasks, "pinned": t.pinned,
                            "fingerprint": t.fingerprint} for t in points]
            for (p, d), points in trend.items()}


@dataclass(frozen=True)
class Outputs:
    markdown: str
    summary: str
    page: str


def render_outputs(session: str, rows: Sequence[Row],
                   published: Sequence[Published],
                   trend: Mapping[str, Sequence[Mapping[str, Any]]] | None,
                   unscored: Sequence[Mapping[str, str]] = ()) -> Outputs:
    return Outputs(markdown=markdown_report(rows, published, unscored=unscored),
                   summary=summary_json(session, rows, unscored),
                   page=summary_page(rows, published, trend or {},
                                     f"llama.cpp benchmark summary: run {session}",
                                     unscored))


def write_outputs(out_dir: Path, outputs: Outputs) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("REPORT.md", outputs.markdown), ("summary.json", outputs.summary),
                       ("summary.html", outputs.page)):
        path = out_dir / name
        atomic.write_text(path, text)
        written.append(path)
    return written


def rebuild(db_path: Path, out_dir: Path, session: str | None = None) -> list[Path]:
    """REPORT.md, summary.json and summary.html of a stored session (default: the latest)."""
    with history.opened(db_path) as conn:
        session = session or history.latest_session(conn)
        if session is None:
            raise LookupError(f"{db_path}: no runs stored yet")
        rows = history.session_rows(conn, session)
        if not rows:
            raise LookupError(f"{db_path}: no runs of session {session!r}")
        published = published_from_json(history.session_published(conn, session))
        trend = trend_for_plot(history.trend(conn, up_to=history.session_end(conn, session)))
    return write_outputs(out_dir, render_outputs(session, rows, published, trend))
