"""The benchmark fixtures: a profile's llama-server, its datasets, its result and gate."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from plugin.bench_state import (
    RESULT_PROPERTY,
    BenchInfraError,
    BenchState,
    server_log_path,
    state_of,
)
from plugin.config.profile import Profile
from plugin.errors import BenchError, ServerStartError
from plugin.gate.references import Reference
from plugin.gate.verdicts import GateOutcome

if TYPE_CHECKING:  # imported when a benchmark runs (startup of every pytest run)
    from plugin.datasets import Dataset
    from plugin.generation.client import Progress
    from plugin.generation.store import Completion
    from plugin.runner import BenchResult
    from plugin.server.lazy import LazyServer


@pytest.fixture(scope="session")
def bench_state(request: pytest.FixtureRequest) -> BenchState:
    return state_of(request.config)


@pytest.fixture(scope="session")
def llama_server(bench_profile: Profile, bench_state: BenchState,
                 request: pytest.FixtureRequest) -> Iterator[LazyServer]:
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
    from plugin.server.spec import engine_host, missing_model_message

    local = not remote_hostname(engine_host(bench_profile))  # remote: files are over there
    if not bench_profile.base_url and local and not bench_profile.model_path.exists():
        if bench_state.options.strict:
            pytest.fail(f"{missing_model_message(bench_profile)} [gate mode: --bench-strict "
                        "/ BENCH_STRICT / CI=true]", pytrace=False)
        pytest.skip(missing_model_message(bench_profile))
    client = None
    profile = bench_profile
    if not bench_profile.base_url:
        client = docker_client(bench_profile.docker_host)
        try:  # the image the fingerprint and the container use: fallback or pull
            profile = ensure_image(client, bench_profile, say=_say(request.config))
        except BaseException:
            client.close()
            raise
    lock_dir = bench_state.options.lock_dir
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






@pytest.fixture(scope="session")
def bench_datasets(bench_state: BenchState) -> Callable[[str], Dataset]:
    from plugin.datasets import load_dataset

    cache: dict[str, Dataset] = {}
    extra = bench_state.options.datasets_dir

    def get(name: str) -> Dataset:
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
def bench_result(bench_profile: Profile, llama_server: LazyServer, bench_state: BenchState,
                 bench_datasets: Callable[[str], Dataset],
                 request: pytest.FixtureRequest) -> BenchResult:
    """The profile's BenchResult on the test's dataset, computed once per session.

    It runs in the fixture (setup phase), so an infrastructure failure - a dead server, a
    broken sandbox - makes the test an error, while a low score makes it a failure.
    """
    from plugin.evaluation.plan import Limits
    from plugin.runner import RunOptions, run_benchmark

    dataset = _dataset_of(request)
    key = (bench_profile.name, dataset)
    if key not in bench_state.results:
        options = RunOptions(
            sandbox=bench_state.options.sandbox,
            sandbox_image=bench_state.options.sandbox_image,
            limits=Limits.named(bench_state.options.limits),
            limit=bench_state.options.limit,
            concurrency=bench_state.options.concurrency,
            hang_timeout_s=bench_state.options.hang_timeout,
            on_completion=_progress_printer(request.config, bench_profile.name),
            on_note=_say(request.config) if not hasattr(request.config, "workerinput")
            else None)
        out_dir = bench_state.reports_dir / bench_profile.name / dataset
        try:
            result = run_benchmark(bench_profile, llama_server, bench_datasets(dataset),
                                   out_dir, options)
            slots = bench_state.options.determinism
            if slots and bench_profile.base_url:
                result = dataclasses.replace(result, determinism={
                    "slots": slots, "finding": f"{slots} slots: not run (BASE_URL: the "
                    "server's slots are not the harness's to set)"})
            elif slots:
                from plugin.determinism import check

                twin = check(result, llama_server, bench_datasets(dataset), slots, options)
                result = dataclasses.replace(result, determinism=twin.to_json())
            bench_state.results[key] = result
        except ServerStartError:
            raise  # says what it polled and quotes this start's log already
        except BenchError as exc:
            raise BenchInfraError(_with_log_excerpt(str(exc), llama_server)) from exc
    result = bench_state.results[key]
    reference = bench_reference_for(bench_state, bench_profile, dataset)
    row, _outcome = bench_state.assess(key, result, reference)
    # the report row travels with the test's reports (xdist-safe); appended directly, as
    # record_property would warn under JUnit's default xunit2 family
    request.node.user_properties.append((RESULT_PROPERTY, json.dumps(row.to_json())))
    return result


@pytest.fixture
def bench_gate(bench_result: BenchResult, bench_profile: Profile, bench_state: BenchState,
               request: pytest.FixtureRequest) -> GateOutcome:
    """The full gate's GateOutcome for the test's result (README "Gate")."""
    return bench_state.gates[(bench_profile.name, _dataset_of(request))][1]


def bench_reference_for(state: BenchState, profile: Profile, dataset: str) -> Reference:
    return state.references.for_profile(profile.name, dataset, state.options.tolerance)


@pytest.fixture
def bench_reference(bench_profile: Profile, bench_state: BenchState,
                    request: pytest.FixtureRequest) -> Reference:
    """The Reference (score, tolerance, provenance) of the profile on the test's dataset."""
    return bench_reference_for(bench_state, bench_profile, _dataset_of(request))


def _with_log_excerpt(message: str, server: LazyServer) -> str:
    """``message`` and the few lines of this run's server log that tell what happened."""
    from plugin.server.logs import log_excerpt

    if getattr(server, "started", False) is False:
        return message  # never started here: no log of this run to quote
    excerpt = log_excerpt(server.log_tail(40))
    lines = "\n".join(f"    | {line}" for line in excerpt.splitlines()) or "    | (empty)"
    return f"{message}\n  server log tail ({server.log_path}):\n{lines}"


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


def _progress_printer(config: pytest.Config,
                      profile: str) -> Callable[[Completion, Progress], None] | None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput") or config.option.verbose < 0:
        return None

    capture = config.pluginmanager.get_plugin("capturemanager")

    def show(_completion: Completion, progress: Progress) -> None:
        step = max(1, progress.total // 10)
        if progress.done % step and progress.done != progress.total:
            return
        eta = f"{progress.eta_s:.0f}s" if progress.eta_s is not None else "-"
        line = (f"[{profile}] generated {progress.done}/{progress.total}, aggregate "
                f"{progress.tokens_per_s:.1f} tok/s (all requests), ETA {eta}")
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            reporter.write_line(line)

    return show
