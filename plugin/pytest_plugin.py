"""pytest glue: options, settings and models.conf loading, profile parametrization.

Thin on purpose. The fixtures live in plugin.fixtures (registered here by import), the
run's state and the report hooks in plugin.bench_state; everything that does work lives in
the pipeline's packages (ARCHITECTURE.md): config -> containers -> server -> generation ->
evaluation -> runner -> gate -> report.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

import pytest

from plugin.bench_state import STATE_KEY, BenchState, options_of, runs_bench_tests, state_of
from plugin.config import settings as S
from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults, ModelsConf, Profile
from plugin.errors import ConfigError
from plugin.fixtures import (  # noqa: F401  (fixtures are registered by being here)
    bench_datasets,
    bench_gate,
    bench_reference,
    bench_result,
    bench_state,
    llama_server,
)
from plugin.gate.references import References, load_references
from plugin.report.text import profile_table


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


def _rooted(config: pytest.Config, value: str | None, default: str) -> Path:
    path = Path(value or default)
    return path if path.is_absolute() else config.rootpath / path


def _load(config: pytest.Config) -> BenchState:
    try:
        options = options_of(config)
        defaults = Defaults(models_dir=options.models_dir, image=options.image,
                            cpu_image=options.cpu_image, health_timeout=options.health_timeout,
                            max_tokens=options.max_tokens, docker_host=options.docker_host,
                            base_url=options.base_url, prompt_mode=options.prompt_mode,
                            tasks=options.tasks,
                            origins=options.origins)
        conf_path = _rooted(config, options.config, "models.conf")
        ref_path = (_rooted(config, options.references, "") if options.references
                    else _default_references(config, conf_path))
        if "config" not in options.origins and not conf_path.exists():
            # installed (pytest11) and run in a folder that is no benchmark project: inert
            # until a test asks for a bench profile (pytest_generate_tests says why)
            return BenchState(config, options, ModelsConf(conf_path, {}),
                              References(ref_path, 5.0, {}, ()), _run_id(config),
                              inactive=True)
        conf = load_models_conf(conf_path, defaults)
        references = load_references(ref_path)
    except ConfigError as exc:
        raise pytest.UsageError(str(exc)) from None
    return BenchState(config, options, conf, references, _run_id(config))


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
    wants_report = runs_bench_tests(config, state.options) and not config.option.collectonly
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

    # None: DOCKER_HOST or the local socket, where the sandbox runs
    hosts = [None, state.options.docker_host] + [
        p.docker_host for p in state.conf.bench_profiles if not p.base_url]
    reaped = reap_engines(hosts)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reaped and reporter is not None:
        reporter.write_line(f"llama-bench: removed {len(reaped)} container(s) left by dead "
                            f"runs: {', '.join(reaped)}")


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
