"""The run's state, registered as a plugin (``bench_state``): results, report rows,
profiles without a score, errors already shown; the report hooks (pytest-html, terminal
summary, REPORT.md and summary.json at the end) and short errors."""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from plugin.config import settings as S
from plugin.config.profile import ModelsConf, Profile
from plugin.errors import BenchError
from plugin.gate.record import Row
from plugin.gate.references import Reference, References
from plugin.gate.verdicts import GateOutcome

if TYPE_CHECKING:  # a benchmark's modules load when it runs, not with every pytest
    from plugin.runner import BenchResult
from plugin.report.html import summary_sections, table_header, table_row, test_extras_html
from plugin.report.outputs import render_outputs, trend_for_plot, write_outputs
from plugin.report.text import clock_lines, determinism_lines, terminal_lines, unscored_lines

RESULT_PROPERTY = "bench_result"
UNSCORED_PROPERTY = "bench_unscored"  # a selected profile x dataset that got no score


class BenchState:
    """Run-wide state, registered as a plugin under the name ``bench_state``."""

    def __init__(self, config: pytest.Config, options: S.Options, conf: ModelsConf,
                 references: References, run_id: str, *, inactive: bool = False) -> None:
        self.config = config
        #: No models.conf here and none named: a folder that is no benchmark project.
        self.inactive = inactive
        self.options = options
        self.conf = conf
        self.references = references
        self.run_id = run_id
        self.results: dict[tuple[str, str], BenchResult] = {}
        self.rows: list[Row] = []  # report rows, collected from test reports
        self.gates: dict[tuple[str, str], tuple[Row, GateOutcome]] = {}  # key -> row, gate
        self.unscored: dict[tuple[str, str], dict[str, str]] = {}  # key -> why no score
        self.selected: int | None = None  # benchmark tests left after -k (None: not known)
        #: id of an error shown in full -> (the error, kept alive; the test that showed it)
        self.shown_errors: dict[int, tuple[BaseException, str]] = {}
        self.extras_shown: dict[str, str] = {}  # run id -> the test that shows its detail
        self.started = _utc_now()

    @property
    def reports_dir(self) -> Path:
        path = Path(self.options.reports_dir)
        return path if path.is_absolute() else self.config.rootpath / path

    @property
    def history_path(self) -> Path:
        value = self.options.history
        path = Path(value) if value else self.reports_dir / "history.sqlite"
        return path if path.is_absolute() else self.config.rootpath / path

    def assess(self, key: tuple[str, str], result: BenchResult,
               reference: Reference) -> tuple[Row, GateOutcome]:
        """Judge with the full gate and store in the history, once per profile x dataset."""
        if key not in self.gates:
            from plugin.gate.assess import assess
            from plugin.gate.history import Session
            from plugin.runner import machine

            session = Session(self.run_id, machine(), self.started,
                              " ".join(self.config.invocation_params.args),
                              tuple(self.references.published_json()))
            self.gates[key] = assess(self.history_path, session, result, reference,
                                          alpha=self.options.alpha,
                                          pin=bool(self.options.update_baseline))
        return self.gates[key]

    def _trend(self) -> dict[str, Any]:
        from plugin.gate import history

        if not self.history_path.exists():
            return {}
        with history.opened(self.history_path) as conn:
            return trend_for_plot(history.trend(conn))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Any:
        """Per-test extras for pytest-html: gate detail, flipped tasks, server log tail."""
        report = yield
        error = call.excinfo.value if call.excinfo is not None else None
        if isinstance(error, SHORT_ERRORS) and not report.skipped:
            earlier = self.shown_errors.get(id(error))
            report.longrepr = short_error(error, earlier and earlier[1])
            if earlier is None:
                self.shown_errors[id(error)] = (error, item.nodeid)
        if report.when == "setup" and not report.passed:
            unscored = _unscored_of(item, report, call)
            if unscored is not None:
                report.user_properties.append((UNSCORED_PROPERTY, json.dumps(unscored)))
        row = _row_of(report)
        if row and report.when == "call" and row.run_id in self.extras_shown:
            from pytest_html import extras  # each profile x dataset's detail appears once

            report.extras = [*getattr(report, "extras", []), extras.html(
                '<div class="bench-extra"><p>Gate detail, flipped tasks and server log: '
                f"see {html.escape(self.extras_shown[row.run_id])}</p></div>")]
        elif row and report.when == "call":
            from pytest_html import extras

            from plugin.gate import history, programs

            self.extras_shown[row.run_id] = item.nodeid
            with history.opened(self.history_path) as conn:
                flipped = programs.flip_details(conn, row.run_id, row.baseline_run)
            log = server_log_path(self.reports_dir, row.profile, self.run_id)
            tail = "\n".join(log.read_text(encoding="utf-8", errors="replace")
                             .splitlines()[-30:]) if log.exists() else ""
            report.extras = [*getattr(report, "extras", []),
                             *(extras.html(part) for part in
                               test_extras_html(row, flipped, tail))]
        return report

    # ------------------------------------------------------------- report hooks

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        table_header(cells)

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport,
                                      cells: list[str]) -> None:
        table_row(_row_of(report), cells)

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_summary(self, prefix: list[str], summary: list[str],
                                    postfix: list[str], session: pytest.Session) -> None:
        postfix.extend(summary_sections(self.rows, self.references.published,
                                             self._trend(), list(self.unscored.values())))

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report: Any) -> None:
        report.title = "llama.cpp benchmark report"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row = _row_of(report)
        if row and report.when == "call":  # one row per profile x dataset, the latest
            self.rows = [r for r in self.rows
                         if (r.profile, r.dataset) != (row.profile, row.dataset)]
            self.rows.append(row)
            self.unscored.pop((row.profile, row.dataset), None)
        unscored = _property_of(report, UNSCORED_PROPERTY)
        if unscored and not any((r.profile, r.dataset) ==
                                (unscored["profile"], unscored["dataset"]) for r in self.rows):
            self.unscored.setdefault((unscored["profile"], unscored["dataset"]), unscored)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        """After -k/-m deselection: whether any benchmark test is left to run."""
        self.selected = sum(1 for item in items if _profile_of(item) is not None)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Gate mode: a run in which no selected profile produced a score fails."""
        if hasattr(session.config, "workerinput") or not self.options.strict:
            return
        if self.unscored and not self.rows and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.selected == 0 and runs_bench_tests(self.config, self.options):
            names = ", ".join(p.name for p in self.conf.bench_profiles) or "(none)"
            terminalreporter.write_line(
                f"llama-bench: no benchmark test selected; the bench profiles of "
                f"{self.conf.path} are: {names} (pytest bench_tests --bench-list shows "
                "them with their models; -k matches these names)", yellow=True)
        if not self.rows and not self.unscored:
            return
        terminalreporter.write_sep("=", "benchmark results")
        if self.rows:
            for line in terminal_lines(self.rows):
                terminalreporter.write_line(line)
            for line in determinism_lines(self.rows):
                terminalreporter.write_line(f"determinism check (no gate): {line}")
            for row in self.rows:
                if row.what_changed:
                    terminalreporter.write_line(
                        f"what changed ({row.profile}, {row.dataset}, against baseline "
                        f"{row.baseline_run}): {'; '.join(row.what_changed)}")
            for line in clock_lines(self.rows, limit=5):
                terminalreporter.write_line(f"machine-sensitive: {line}")
        if self.unscored:
            mode = "gate mode: errors" if self.options.strict else \
                "skipped; --bench-strict makes them errors"
            terminalreporter.write_line(f"selected profiles without a score ({mode}):",
                                        red=bool(self.options.strict), yellow=True)
            for line in unscored_lines(list(self.unscored.values())):
                terminalreporter.write_line(f"  {line}")
        self._write_outputs()

    def _write_outputs(self) -> None:
        write_outputs(self.reports_dir, render_outputs(
            self.run_id, self.rows, self.references.published, self._trend(),
            list(self.unscored.values())))


def _row_of(report: pytest.TestReport) -> Row | None:
    data = _property_of(report, RESULT_PROPERTY)
    return Row.from_json(data) if data is not None else None


def _property_of(report: pytest.TestReport, key: str) -> dict[str, Any] | None:
    for name, value in getattr(report, "user_properties", ()):
        if name == key:
            return json.loads(value) if isinstance(value, str) else dict(value)
    return None


def _profile_of(item: pytest.Item) -> Profile | None:
    callspec = getattr(item, "callspec", None)
    profile = callspec.params.get("bench_profile") if callspec else None
    return profile if isinstance(profile, Profile) else None


def _unscored_of(item: pytest.Item, report: pytest.TestReport,
                 call: Any) -> dict[str, str] | None:
    """Profile, dataset, outcome and one-line reason of a benchmark test whose setup did
    not produce a score (skipped or errored), or None for any other test."""
    profile = _profile_of(item)
    marker = item.get_closest_marker("bench_dataset")
    if not isinstance(profile, Profile) or marker is None or not marker.args:
        return None
    error = call.excinfo.value if call.excinfo is not None else None
    if report.skipped:
        reason = str(getattr(error, "msg", "") or error or "skipped")
    else:
        reason = f"{type(error).__name__}: {error}" if error is not None else "error"
    first = next((line.strip() for line in reason.splitlines() if line.strip()), reason)
    return {"profile": profile.name, "dataset": str(marker.args[0]),
            "outcome": "skipped" if report.skipped else "error", "reason": first[:300]}


STATE_KEY = pytest.StashKey[BenchState]()


def state_of(config: pytest.Config) -> BenchState:
    return config.stash[STATE_KEY]


def options_of(config: pytest.Config) -> S.Options:
    """Every setting resolved: command line, environment, ini, default."""
    return S.Options.resolve(
        lambda setting: config.getoption(setting.dest), os.environ,
        lambda setting: (config.getini(setting.ini)
                         if not setting.flag or setting.flag_ini else None))


def _utc_now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def runs_bench_tests(config: pytest.Config, options: S.Options) -> bool:
    """This run benchmarks: it names the project's bench_tests/, or a models.conf (the
    installed plugin, run from any folder with --bench-config)."""
    if "config" in options.origins:
        return True
    bench_dir = (config.rootpath / "bench_tests").resolve()
    for arg in config.args:
        path = Path(arg.split("::")[0])
        path = (config.invocation_params.dir / path).resolve()
        if path == bench_dir or bench_dir in path.parents:
            return True
    return False


class BenchInfraError(Exception):
    """Infrastructure failure during a run (server gone, sandbox failed): a test error."""


#: Errors shown as their message only (they say what, where and the fix), not as a
#: traceback through the fixtures.
SHORT_ERRORS: tuple[type[BaseException], ...] = (BenchError, BenchInfraError)
MAX_ERROR_LINES = 12


def short_error(error: BaseException, earlier: str | None = None) -> str:
    """``Type: message``, at most MAX_ERROR_LINES lines; ``earlier`` names the test that
    already showed this very error (a profile's failed start is one error, not one per
    test)."""
    lines = str(error).strip().splitlines() or [""]
    if earlier is not None:
        return f"{type(error).__name__}: {lines[0]}\n  (the same error as {earlier}, above)"
    if len(lines) > MAX_ERROR_LINES:
        lines = [*lines[:MAX_ERROR_LINES - 1], f"  ... {len(lines) - MAX_ERROR_LINES + 1} "
                 "more lines"]
    return f"{type(error).__name__}: " + "\n".join(lines)


def server_log_path(reports_dir: Path, profile: str, run_id: str) -> Path:
    """This run's server log of the profile; ``<profile>/server.log`` links to the last."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    return reports_dir / profile / "logs" / f"server-{safe}.log"
