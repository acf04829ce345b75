"""Session-wide guard of the harness's own tests: no container may leak.

At the end of the session (on the xdist controller, or the only process) the Docker
engine must hold no container labelled ``bench.harness=llama-bench`` that this test run
is responsible for: left by this process, or by a process that has died (an xdist worker,
a ``pytest`` subprocess a test ran). Containers of live processes of other runs on the
same machine are not ours and stay. Leftovers are removed, listed under "leaked
containers" and turn the run's exit status into a failure.

It also provides ``bench_project``: a tiny benchmark project (models.conf, a conftest
loading the plugin, one test file) that the lifecycle tests run in a ``pytest``
subprocess, so they can interrupt it, time it out or run it under xdist.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from plugin.containers.labels import LABEL_OWNER_HOST, LABEL_OWNER_PID
from plugin.containers.owner import LEGACY_PID, pid_alive

# The suite behaves the same on a workstation and in CI: CI=true turns gate mode
# (--bench-strict) on by default, so it is taken out of the environment of every run the
# tests start; the tests of gate mode set it themselves.
os.environ.pop("CI", None)

ROOT = Path(__file__).resolve().parent.parent

HARNESS_FILTER = {"label": "bench.harness=llama-bench"}
LEAKS = pytest.StashKey[list[str]]()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if hasattr(session.config, "workerinput"):
        return  # xdist worker: the controller checks once everything has finished
    leaked = _leftovers()
    if leaked:
        session.config.stash[LEAKS] = leaked
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    leaked = config.stash.get(LEAKS, [])
    if leaked:
        terminalreporter.write_sep("=", "leaked containers", red=True)
        for line in leaked:
            terminalreporter.write_line(line)
        terminalreporter.write_line("(removed now; the run fails: something skipped its "
                                    "teardown)")


def _leftovers() -> list[str]:
    """Descriptions of our leftover harness containers, removed on the way."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception:  # no Docker on this machine: nothing can have leaked
        return []
    try:
        ours = [c for c in _harness_containers(client) if _ours(c)]
        deadline = time.monotonic() + 30  # a removal may still be in progress (a reaper
        while ours and time.monotonic() < deadline:  # at nice 10, a slow teardown)
            time.sleep(1)
            ours = [c for c in _harness_containers(client) if _ours(c)]
        for container in ours:
            with contextlib.suppress(Exception):
                client.api.remove_container(container["Id"], force=True)
        return [_describe(c) for c in ours]
    finally:
        client.close()


def _harness_containers(client: Any) -> list[dict[str, Any]]:
    return list(client.api.containers(all=True, filters=HARNESS_FILTER))


def _ours(entry: dict[str, Any]) -> bool:
    """Made by this test process, by a process of this host that is gone, or by one that
    left no owner labels at all (every harness container must carry them)."""
    labels = entry.get("Labels") or {}
    host = labels.get(LABEL_OWNER_HOST)
    if host and host != socket.gethostname():
        return False
    pid = labels.get(LABEL_OWNER_PID) or labels.get(LEGACY_PID) or ""
    return not pid.isdigit() or int(pid) == os.getpid() or not pid_alive(int(pid))


def _describe(entry: dict[str, Any]) -> str:
    labels = entry.get("Labels") or {}
    name = (entry.get("Names") or ["/" + entry["Id"][:12]])[0].lstrip("/")
    keys = ("bench.role", "bench.profile", "bench.run_id", "bench.owner_pid", "bench.pid")
    details = ", ".join(f"{k}={labels[k]}" for k in keys if k in labels)
    return f"{name} ({entry.get('Status', '?')}; {details})"


# --------------------------------------------------------------------------- bench_project

#: The benchmark "test" of the tiny project: start the profile's server (through the
#: plugin's fixture), write what it got to $LIFE_OUT/<profile>.json, send requests (once,
#: or until interrupted with LIFE_MODE=loop), then stay up LIFE_HOLD seconds.
LIFE_TEST = """\
import json, os, time
from pathlib import Path

import httpx


def test_life(bench_profile, llama_server, bench_state):
    handle = llama_server.get()
    labels = {}
    if handle.client is not None:
        labels = handle.client.containers.get(handle.container_id).labels
    record = {"profile": bench_profile.name, "run_id": bench_state.run_id,
              "worker": os.environ.get("PYTEST_XDIST_WORKER", "-"), "pid": os.getpid(),
              "container_id": handle.container_id, "labels": labels,
              "base_url": handle.base_url, "build": handle.props.get("build_info"),
              "up": time.time()}
    while True:
        answer = httpx.post(f"{handle.openai_base_url}/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
            "temperature": 0})
        assert answer.status_code == 200, answer.text
        if "first_answer" not in record:
            record["first_answer"] = time.time()
            save(record)
        if os.environ.get("LIFE_MODE") != "loop":
            break
    time.sleep(float(os.environ.get("LIFE_HOLD", "0")))
    record["down"] = time.time()
    save(record)


def save(record):
    path = Path(os.environ["LIFE_OUT"], record["profile"] + ".json")
    path.with_suffix(".tmp").write_text(json.dumps(record))
    os.replace(path.with_suffix(".tmp"), path)
"""


@dataclass
class BenchProject:
    """A tiny project directory; :meth:`start` runs ``pytest bench_tests`` in it."""

    path: Path
    out: Path

    def start(self, *args: str, run_id: str, env: Mapping[str, str] | None = None,
              **env_vars: str) -> subprocess.Popen[str]:
        environ = {k: v for k, v in os.environ.items()
                   if not k.startswith(("BENCH_", "PYTEST_"))}
        environ.update(PYTHONPATH=str(ROOT), BENCH_RUN_ID=run_id, LIFE_OUT=str(self.out),
                       BENCH_REPORTS_DIR=str(self.path / "reports"), **(env or {}), **env_vars)
        if not run_id:
            environ.pop("BENCH_RUN_ID")
        return subprocess.Popen(
            [sys.executable, "-m", "pytest", "bench_tests", "-p", "no:randomly", *args],
            cwd=self.path, env=environ, text=True, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_default_sigint)

    def records(self) -> dict[str, dict[str, Any]]:
        return {p.stem: json.loads(p.read_text()) for p in sorted(self.out.glob("*.json"))}


def _default_sigint() -> None:
    """A shell starts background jobs with SIGINT ignored, and children inherit that: give
    the project's pytest the default, so a Ctrl-C test works however the suite runs."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="session")
def smoke_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny smoke models, plus ``stuck.gguf``: a named pipe llama-server blocks on
    forever while /health answers 503 (a real server stuck in its model load)."""
    out_dir = tmp_path_factory.mktemp("lifecycle-models")
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_smoke_model.py"),
                    "--out-dir", str(out_dir)], check=True, capture_output=True)
    os.mkfifo(out_dir / "stuck.gguf")
    out_dir.chmod(0o755)
    return out_dir


class ProjectFactory:
    """``bench_project(*sections)`` writes the project; ``bench_project.profile(...)`` is
    one CPU profile section of its models.conf."""

    def __init__(self, tmp_path: Path, models_dir: Path) -> None:
        self.tmp_path = tmp_path
        self.models_dir = models_dir

    @staticmethod
    def profile(name: str, model: str = "smoke-tiny.gguf", **keys: str) -> str:
        values = {"NAME": name, "MODEL": model, "CTX_SIZE": "512", "N_GPU_LAYERS": "0",
                  "FIT": "off", "MAX_TOKENS": "8", "EXTRA_ARGS": "-np 1 -t 1", "QUANT": "F32",
                  **keys}
        return f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in values.items())

    def __call__(self, *sections: str, extra_tests: str = "") -> BenchProject:
        project = self.tmp_path / "project"
        (project / "bench_tests").mkdir(parents=True)
        (project / "conftest.py").write_text('pytest_plugins = ["plugin.pytest_plugin"]\n')
        (project / "pytest.ini").write_text(textwrap.dedent("""\
            [pytest]
            addopts = -p no:cacheprovider
            timeout_method = signal
            """))
        default = (f"[DEFAULT]\nMODELS_DIR={self.models_dir}\n"
                   "CPU_IMAGE=local/llama.cpp:server\nHEALTH_TIMEOUT=120\n\n")
        (project / "models.conf").write_text(default + "\n".join(sections))
        (project / "reference-scores.json").write_text(
            json.dumps({"metadata": {}, "models": {}, "profiles": {}}))
        (project / "bench_tests" / "test_life.py").write_text(LIFE_TEST + extra_tests)
        out = self.tmp_path / "out"
        out.mkdir()
        return BenchProject(project, out)


@pytest.fixture
def bench_project(tmp_path: Path, smoke_models: Path) -> ProjectFactory:
    return ProjectFactory(tmp_path, smoke_models)


@pytest.fixture(scope="session")
def oracle_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Expected outputs of the evaluation tests, computed once per session next to
    pytest's base temp dir; shared by xdist workers (ensure_oracle locks each entry)."""
    path = tmp_path_factory.getbasetemp().parent / "bench-oracle-cache"
    path.mkdir(exist_ok=True)
    return path
