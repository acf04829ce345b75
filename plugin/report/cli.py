"""``python -m plugin report``: rebuild the reports from the history database.

    python -m plugin report [--db reports/history.sqlite] [--out reports] [--session ID]
    python -m plugin report --db merged.sqlite --merge a/history.sqlite b/history.sqlite
    python -m plugin report --baselines        # current pins (run id + fingerprint) as JSON
    python -m plugin report --check            # exit 1 when a gate of the session failed
    python -m plugin report --list             # the runs in the history
    python -m plugin report --compare RUN_A RUN_B   # any two runs, task by task

Nothing is run: REPORT.md, summary.json and summary.html are rendered from the stored
rows, byte for byte what the run wrote (REPORT.md, summary.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from plugin.gate import history
from plugin.gate.record import Row
from plugin.gate.verdicts import FAILING
from plugin.report import compare
from plugin.report.outputs import rebuild

REPORT_HELP = "rebuild REPORT.md, summary.json and summary.html from the history database"


def add_report_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> Callable[[argparse.Namespace], int]:
    parser = sub.add_parser("report", help=REPORT_HELP, description=REPORT_HELP)
    parser.add_argument("--db", type=Path, default=Path("reports/history.sqlite"),
                        help="history database (default %(default)s); created by --merge")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where the reports go (default: the database's directory)")
    parser.add_argument("--session", metavar="ID",
                        help="the run (pytest session id) to report (default: the latest)")
    parser.add_argument("--merge", type=Path, nargs="+", default=[], metavar="DB",
                        help="first merge these history databases (other runners/hosts) "
                             "into --db; runs already there are kept")
    parser.add_argument("--baselines", action="store_true",
                        help="print the pinned baselines as JSON and exit")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when a gate of the reported session failed")
    parser.add_argument("--list", action="store_true",
                        help="list the runs in the history (id, date, plus pass@1, gate)")
    parser.add_argument("--compare", nargs=2, metavar=("RUN_A", "RUN_B"),
                        help="compare two runs task by task (ids or unique parts of ids, "
                             "see --list): flips both ways, exact McNemar p, what changed; "
                             "printed, and written as compare-A-vs-B.md/.html")
    parser.set_defaults(run=run_report)
    return run_report


def run_report(args: argparse.Namespace) -> int:

    if not args.merge and not args.db.exists():
        print(f"error: {args.db}: no history database; fix: run the benchmarks first or "
              "pass --db", file=sys.stderr)
        return 2
    with history.opened(args.db) as conn:
        for source in args.merge:
            if not source.is_file():
                print(f"error: --merge {source}: no such file", file=sys.stderr)
                return 2
            added = history.merge(conn, source)
            print(f"merged {source}: {added} new run(s)", file=sys.stderr)
        if args.baselines:
            print(json.dumps(history.baselines(conn), indent=1))
            return 0
        if args.list:
            for line in compare.list_runs(conn):
                print(line)
            return 0
        if args.compare:
            try:
                found = compare.compare(conn, *args.compare)
            except LookupError as exc:
                print(f"error: --compare: {exc}", file=sys.stderr)
                return 2
            print(compare.markdown(found), end="")
            for path in compare.write(found, args.out or args.db.parent):
                print(path, file=sys.stderr)
            return 0
    out = args.out or args.db.parent
    try:
        written = rebuild(args.db, out, args.session)
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    if args.check:
        rows = [Row.from_json(r) for r in
                json.loads((out / "summary.json").read_text(encoding="utf-8"))["results"]]
        failed = [f"{r.profile} ({r.dataset}, {r.machine}): {r.gate}"
                  for r in rows if r.gate in FAILING]
        for line in failed:
            print(f"gate failed: {line}", file=sys.stderr)
        return 1 if failed else 0
    return 0
