"""pytest glue: options, profile parametrization, fixtures, report hooks.

Thin on purpose: parsing lives in plugin.config, the server in plugin.server, the run in
plugin.runner, scoring in plugin.references, rendering in plugin.report.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from plugin.config import settings as S
from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults, ModelsConf, Profile
from plugin.errors import BenchError, ConfigError, ServerStartError
from plugin.gate.assess import assess
from plugin.gate.references import References, load_references
from plugin.report.html import summary_sections, table_header, table_row, test_extras_html
from plugin.report.outputs import render_outputs, trend_for_plot, write_outputs
from plugin.report.text import profile_table, terminal_lines, unscored_lines

RESULT_PROPERTY = "bench_result"
UNSCORED_PROPERTY = "bench_unscored"  # a selected profile x dataset that got no score


class BenchState:
    """Run-wide state, registered as a plugin under the name ``bench_state``."""

    def __init__(self, config: pytest.Config, values: dict[str, Any], conf: ModelsConf,
                 references: References, run_id: str, *, inactive: bool = False) -> None:
        self.config = config
        #: No models.conf here and none named: a folder that is no benchmark project.
        self.inactive = inactive
        self.values = values
        self.conf = conf
        self.references = references
        self.run_id = run_id
        self.results: dict[tuple[str, str], Any] = {}  # (profile, dataset) -> BenchResult
        self.rows: list[dict[str, Any]] = []  # report rows, collected from test reports
        self.gates: dict[tuple[str, str], tuple[dict[str, Any], Any]] = {}  # key -> row, gate
        self.unscored: dict[tuple[str, str], dict[str, str]] = {}  # key -> why no score
        self.selected: int | None = None  # benchmark tests left after -k (None: not known)
        #: id of an error shown in full -> (the error, kept alive; the test that showed it)
        self.shown_errors: dict[int, tuple[BaseException, str]] = {}
        self.started = _utc_now()

    @property
    def reports_dir(self) -> Path:
        path = Path(self.values["reports-dir"])
        return path if path.is_absolute() else self.config.rootpath / path

    @property
    def history_path(self) -> Path:
        value = self.values["history"]
        path = Path(value) if value else self.reports_dir / "history.sqlite"
        return path if path.is_absolute() else self.config.rootpath / path

    def assess(self, key: tuple[str, str], result: Any,
               reference: Any) -> tuple[dict[str, Any], Any]:
        """Judge with the full gate and store in the history, once per profile x dataset."""
        if key not in self.gates:
            from plugin.gate.history import Session
            from plugin.runner import machine

            session = Session(self.run_id, machine(), self.started,
                              " ".join(self.config.invocation_params.args),
                              tuple(self.references.published_json()))
            self.gates[key] = assess(self.history_path, session, result, reference,
                                          alpha=self.values["alpha"],
                                          pin=bool(self.values["update-baseline"]))
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
        if row and report.when == "call":
            from pytest_html import extras

            from plugin.gate import history

            with history.opened(self.history_path) as conn:
                flipped = history.flipped_tasks(conn, row["run_id"])
            log = server_log_path(self.reports_dir, row["profile"], self.run_id)
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
                         if (r["profile"], r["dataset"]) != (row["profile"], row["dataset"])]
            self.rows.append(row)
            self.unscored.pop((row["profile"], row["dataset"]), None)
        unscored = _property_of(report, UNSCORED_PROPERTY)
        if unscored and not any((r["profile"], r["dataset"]) ==
                                (unscored["profile"], unscored["dataset"]) for r in self.rows):
            self.unscored.setdefault((unscored["profile"], unscored["dataset"]), unscored)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        """After -k/-m deselection: whether any benchmark test is left to run."""
        self.selected = sum(1 for item in items if _profile_of(item) is not None)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Gate mode: a run in which no selected profile produced a score fails."""
        if hasattr(session.config, "workerinput") or not self.values["strict"]:
            return
        if self.unscored and not self.rows and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.selected == 0 and _runs_bench_tests(self.config):
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
        if self.unscored:
            mode = "gate mode: errors" if self.values["strict"] else \
                "skipped; --bench-strict makes them errors"
            terminalreporter.write_line(f"selected profiles without a score ({mode}):",
                                        red=bool(self.values["strict"]), yellow=True)
            for line in unscored_lines(list(self.unscored.values())):
                terminalreporter.write_line(f"  {line}")
        self._write_outputs()

    def _write_outputs(self) -> None:
        write_outputs(self.reports_dir, render_outputs(
            self.run_id, self.rows, self.references.published, self._trend(),
            list(self.unscored.values())))


def _row_of(report: pytest.TestReport) -> dict[str, Any] | None:
    return _property_of(report, RESULT_PROPERTY)


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


# ----------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("bench", "llama.cpp benchmark harness (also env BENCH_*, ini bench_*)")
    for setting in S.SETTINGS:
        text = f"{setting.help} [env {setting.env}, ini {setting.ini}]"
        if setting.flag:
            group.addoption(setting.option, action="store_true", default=None,
                            dest=setting.dest, help=setting.help)
            continue
        group.addoption(setting.option, default=None, dest=setting.dest,
                        metavar=setting.metavar, choices=setting.choices or None, help=text)
        parser.addini(setting.ini, help=setting.help, default=None)
    for setting in S.SETTINGS:
        if setting.flag and setting.flag_ini:
            parser.addini(setting.ini, help=setting.help, type="bool", default=None)


def _values(config: pytest.Config) -> tuple[dict[str, Any], dict[str, str]]:
    """Every setting's value, and where each that is not a default came from."""
    values, origins = {}, {}
    for setting in S.SETTINGS:
        cli = config.getoption(setting.dest)
        ini = config.getini(setting.ini) if not setting.flag or setting.flag_ini else None
        values[setting.name] = S.resolve(setting, cli, os.environ, ini)
        where = S.origin(setting, cli, os.environ, ini)
        if where:
            origins[setting.name] = where
    return values, origins


def _rooted(config: pytest.Config, value: str | None, default: str) -> Path:
    path = Path(value or default)
    return path if path.is_absolute() else config.rootpath / path


def _load(config: pytest.Config) -> BenchState:
    try:
        values, origins = _values(config)
        defaults = Defaults(models_dir=values["models-dir"], image=values["image"],
                            cpu_image=values["cpu-image"],
                            health_timeout=values["health-timeout"],
                            max_tokens=values["max-tokens"],
                            docker_host=values["docker-host"], base_url=values["base-url"],
                            origins=origins)
        conf_path = _rooted(config, values["config"], "models.conf")
        ref_path = (_rooted(config, values["references"], "") if values["references"]
                    else _default_references(config, conf_path))
        if "config" not in origins and not conf_path.exists():
            # installed (pytest11) and run in a folder that is no benchmark project: inert
            # until a test asks for a bench profile (pytest_generate_tests says why)
            return BenchState(config, values, ModelsConf(conf_path, {}),
                              References(ref_path, 5.0, {}, ()), _run_id(config),
                              inactive=True)
        conf = load_models_conf(conf_path, defaults)
        references = load_references(ref_path)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    return BenchState(config, values, conf, references, _run_id(config))


def _default_references(config: pytest.Config, conf_path: Path) -> Path:
    """reference-scores.json beside models.conf, else in the rootdir (a models.conf kept
    elsewhere, used with this project's references)."""
    beside = conf_path.with_name("reference-scores.json")
    rooted = config.rootpath / "reference-scores.json"
    return rooted if not beside.exists() and rooted.exists() else beside


def _run_id(config: pytest.Config) -> str:
    worker = getattr(config, "workerinput", None)
    return str(worker["bench_run_id"]) if worker else (
        os.environ.get("BENCH_RUN_ID") or _new_run_id())


def _utc_now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _new_run_id() -> str:
    import datetime
    import secrets

    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{secrets.token_hex(3)}"


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if not config.getoption("bench_list"):
        return None
    state = _load(config)
    print(f"bench profiles of {state.conf.path}:")
    for line in profile_table(state.conf.bench_profiles):
        print(line)
    return 0


def _runs_bench_tests(config: pytest.Config) -> bool:
    """This run benchmarks: it names the project's bench_tests/, or a models.conf (the
    installed plugin, run from any folder with --bench-config)."""
    if "config" in _values(config)[1]:
        return True
    bench_dir = (config.rootpath / "bench_tests").resolve()
    for arg in config.args:
        path = Path(arg.split("::")[0])
        path = (config.invocation_params.dir / path).resolve()
        if path == bench_dir or bench_dir in path.parents:
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "bench_profiles(*patterns): run this benchmark test "
                            "only for profiles matching one of the fnmatch patterns; "
                            "'!pattern' excludes")
    config.addinivalue_line("markers", "bench_dataset(name): the dataset a benchmark test "
                            "scores (humaneval or mbpp)")
    state = _load(config)
    config.stash[STATE_KEY] = state
    config.pluginmanager.register(state, "bench_state")
    wants_report = _runs_bench_tests(config) and not config.option.collectonly
    if wants_report and hasattr(config.option, "htmlpath"):
        if not config.option.htmlpath:
            config.option.htmlpath = str(state.reports_dir / "report.html")
            config.option.self_contained_html = True
    if wants_report and hasattr(config.option, "xmlpath") and not config.option.xmlpath:
        # JUnit XML for CI, next to the html
        config.option.xmlpath = str(state.reports_dir / "junit.xml")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:  # xdist: share one run id with the workers
    node.workerinput["bench_run_id"] = state_of(node.config).run_id


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove containers whose run died before its teardown (SIGKILL, the timeout
    ``thread`` method): once per run (xdist controller), silently without Docker."""
    config = session.config
    state = state_of(config)
    if hasattr(config, "workerinput") or state.inactive:
        return
    from plugin.containers.reaper import reap_engines

    hosts = [state.values["docker-host"]] + [p.docker_host for p in state.conf.bench_profiles
                                             if not p.base_url]
    reaped = reap_engines(hosts) + _reap_sandboxes()
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reaped and reporter is not None:
        reporter.write_line(f"llama-bench: removed {len(reaped)} container(s) left by dead "
                            f"runs: {', '.join(reaped)}")


def _reap_sandboxes() -> list[str]:
    """Sandbox containers of dead runs (plugin.evaluation labels them itself)."""
    try:
        from plugin.containers.reaper import reap_sandbox_containers

        count = reap_sandbox_containers()
    except Exception:  # no Docker here: nothing to reap
        return []
    return [f"{count} sandbox container(s)"] if count else []


# ----------------------------------------------------------------- collection


def _selected_profiles(metafunc: pytest.Metafunc, conf: ModelsConf) -> list[Profile]:
    marker = metafunc.definition.get_closest_marker("bench_profiles")
    profiles = conf.bench_profiles
    if marker:
        include = [pat for pat in marker.args if not pat.startswith("!")]
        exclude = [pat[1:] for pat in marker.args if pat.startswith("!")]
        profiles = [p for p in profiles
                    if (not include or any(fnmatch.fnmatch(p.name, pat) for pat in include))
                    and not any(fnmatch.fnmatch(p.name, pat) for pat in exclude)]
    return profiles


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "bench_profile" not in metafunc.fixturenames:
        return
    state = state_of(metafunc.config)
    if state.inactive:
        raise pytest.UsageError(
            f"{metafunc.definition.nodeid} needs bench profiles, but there is no "
            f"{state.conf.path}\n  fix: pass --bench-config PATH/models.conf (or set "
            "BENCH_CONFIG, or ini bench_config)")
    profiles = _selected_profiles(metafunc, state.conf)
    params = [pytest.param(p, id=p.name, marks=pytest.mark.xdist_group(p.name))
              for p in profiles]
    metafunc.parametrize("bench_profile", params, scope="session")


# ----------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def bench_state(request: pytest.FixtureRequest) -> BenchState:
    return state_of(request.config)


@pytest.fixture(scope="session")
def llama_server(bench_profile: Profile, bench_state: BenchState,
                 request: pytest.FixtureRequest) -> Iterator[Any]:
    """The profile's llama-server, started on first use (a LazyServer).

    A missing model file skips the profile's tests (with the fix in the reason), or errors
    them in gate mode (``--bench-strict``); a server that does not get healthy errors
    them, with the tail of its log. The container is stopped and removed at the end of
    the profile's tests, always. When every answer is
    already stored under the run's fingerprint, the server is never started.
    """
    from plugin.containers.client import docker_client, remote_hostname
    from plugin.server.images import ensure_image
    from plugin.server.lazy import DEFAULT_LOCK_DIR, LazyServer
    from plugin.server.spec import engine_host

    local = not remote_hostname(engine_host(bench_profile))  # remote: files are over there
    if not bench_profile.base_url and local and not bench_profile.model_path.exists():
        if bench_state.values["strict"]:
            pytest.fail(f"{missing_model_reason(bench_profile)} [gate mode: --bench-strict "
                        "/ BENCH_STRICT / CI=true]", pytrace=False)
        pytest.skip(missing_model_reason(bench_profile))
    client = None
    profile = bench_profile
    if not bench_profile.base_url:
        client = docker_client(bench_profile.docker_host)
        try:  # the image the fingerprint and the container use: fallback or pull
            profile = ensure_image(client, bench_profile, say=_say(request.config))
        except BaseException:
            client.close()
            raise
    lock_dir = bench_state.values["lock-dir"]
    server = LazyServer(profile, run_id=bench_state.run_id, client=client,
                        log_path=server_log_path(bench_state.reports_dir, bench_profile.name,
                                                 bench_state.run_id),
                        latest_log=bench_state.reports_dir / bench_profile.name / "server.log",
                        lock_dir=Path(lock_dir) if lock_dir else DEFAULT_LOCK_DIR)
    try:
        yield server
    finally:
        server.close()
        if client is not None:
            client.close()


def server_log_path(reports_dir: Path, profile: str, run_id: str) -> Path:
    """This run's server log of the profile; ``<profile>/server.log`` links to the last."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    return reports_dir / profile / "logs" / f"server-{safe}.log"


def missing_model_reason(profile: Profile) -> str:
    return (f"model file not found: {profile.model_path} (set --bench-models-dir / "
            f"BENCH_MODELS_DIR, or edit MODEL at {profile.where('MODEL')})")


@pytest.fixture(scope="session")
def bench_datasets(bench_state: BenchState) -> Callable[[str], Any]:
    from plugin.datasets import load_dataset

    cache: dict[str, Any] = {}
    extra = bench_state.values["datasets-dir"]

    def get(name: str) -> Any:
        if name not in cache:
            cache[name] = load_dataset(name, search_dirs=[Path(extra)] if extra else [])
        return cache[name]

    return get


def _dataset_of(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("bench_dataset")
    if marker is None or not marker.args:
        raise pytest.UsageError(f"{request.node.nodeid} uses bench_result without "
                                "@pytest.mark.bench_dataset('humaneval'|'mbpp')")
    return str(marker.args[0])


@pytest.fixture
def bench_result(bench_profile: Profile, llama_server: Any, bench_state: BenchState,
                 bench_datasets: Callable[[str], Any], request: pytest.FixtureRequest) -> Any:
    """The profile's BenchResult on the test's dataset, computed once per session.

    It runs in the fixture (setup phase), so an infrastructure failure - a dead server, a
    broken sandbox - makes the test an error, while a low score makes it a failure.
    """
    from plugin.runner import RunOptions, run_benchmark

    dataset = _dataset_of(request)
    key = (bench_profile.name, dataset)
    if key not in bench_state.results:
        options = RunOptions(
            sandbox=bench_state.values["sandbox"],
            sandbox_image=bench_state.values["sandbox-image"],
            limit=bench_state.values["limit"],
            concurrency=bench_state.values["concurrency"],
            hang_timeout_s=bench_state.values["hang-timeout"],
            on_completion=_progress_printer(request.config, bench_profile.name))
        out_dir = bench_state.reports_dir / bench_profile.name / dataset
        try:
            bench_state.results[key] = run_benchmark(
                bench_profile, llama_server, bench_datasets(dataset), out_dir, options)
        except ServerStartError:
            raise  # says what it polled and quotes this start's log already
        except BenchError as exc:
            raise BenchInfraError(_with_log_excerpt(str(exc), llama_server)) from exc
    result = bench_state.results[key]
    reference = bench_reference_for(bench_state, bench_profile, dataset)
    row, _outcome = bench_state.assess(key, result, reference)
    # the report row travels with the test's reports (xdist-safe); appended directly, as
    # record_property would warn under JUnit's default xunit2 family
    request.node.user_properties.append((RESULT_PROPERTY, json.dumps(row)))
    return result


@pytest.fixture
def bench_gate(bench_result: Any, bench_profile: Profile, bench_state: BenchState,
               request: pytest.FixtureRequest) -> Any:
    """The full gate's GateOutcome for the test's result (README "Gate")."""
    return bench_state.gates[(bench_profile.name, _dataset_of(request))][1]


def bench_reference_for(state: BenchState, profile: Profile, dataset: str) -> Any:
    return state.references.for_profile(profile.name, dataset, state.values["tolerance"])


@pytest.fixture
def bench_reference(bench_profile: Profile, bench_state: BenchState,
                    request: pytest.FixtureRequest) -> Any:
    """The Reference (score, tolerance, provenance) of the profile on the test's dataset."""
    return bench_reference_for(bench_state, bench_profile, _dataset_of(request))


class BenchInfraError(Exception):
    """Infrastructure failure during a run (server gone, sandbox failed): a test error."""


def _with_log_excerpt(message: str, server: Any) -> str:
    """``message`` and the few lines of this run's server log that tell what happened."""
    from plugin.server.logs import log_excerpt

    if getattr(server, "started", False) is False:
        return message  # never started here: no log of this run to quote
    excerpt = log_excerpt(server.log_tail(40))
    lines = "\n".join(f"    | {line}" for line in excerpt.splitlines()) or "    | (empty)"
    return f"{message}\n  server log tail ({server.log_path}):\n{lines}"


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


def _say(config: pytest.Config) -> Callable[[str], None]:
    """A line on the terminal now (not captured), or nowhere under -q or in xdist workers."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:
        if reporter is None:
            return
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(line)

    return say


def _progress_printer(config: pytest.Config, profile: str) -> Callable[[Any, Any], None] | None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput") or config.option.verbose < 0:
        return None

    capture = config.pluginmanager.get_plugin("capturemanager")

    def show(_completion: Any, progress: Any) -> None:
        step = max(1, progress.total // 10)
        if progress.done % step and progress.done != progress.total:
            return
        eta = f"{progress.eta_s:.0f}s" if progress.eta_s is not None else "-"
        line = (f"[{profile}] generated {progress.done}/{progress.total}, "
                f"{progress.tokens_per_s:.1f} tok/s, ETA {eta}")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(line)

    return show
