"""The server lifecycle through the plugin, in real ``pytest`` subprocesses, real Docker.

* Interruptions leak nothing: Ctrl-C (SIGINT) while llama-server loads and while it
  generates, Ctrl-C to a whole xdist run, and a pytest-timeout expiry (``signal`` method)
  during the start. Afterwards no container of that run id exists.
* A profile whose server cannot start errors its own tests, with the log tail, and the run
  goes on to the next profile (the real bench_tests, real sandbox, ``--bench-limit 3``).
* Under xdist the workers share the controller's run id (checked in the Ctrl-C test).
* ``--bench-base-url``: the benchmark runs against a server started by hand, and the
  harness starts no container of its own.

The tiny project comes from the ``bench_project`` fixture (tests/conftest.py):
``bench-stuck`` is a real llama-server whose model is a named pipe, so it stays in
"Loading model" (HTTP 503) until killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import support
from docker.client import DockerClient
from support import finish, junit_outcomes, wait_until

from plugin.containers.client import docker_client
from plugin.containers.labels import LABEL_OWNER_PID, LABEL_RUN_ID, harness_labels

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("LLAMA_IMAGE", "local/llama.cpp:server")


@pytest.fixture(scope="module")
def client() -> Iterator[DockerClient]:
    client = docker_client()
    yield client
    client.close()


@pytest.fixture
def run_id(client: DockerClient) -> Iterator[str]:
    """A fresh run id; the test's assertions check its containers, this is the backstop."""
    run_id = f"life-{uuid.uuid4().hex[:12]}"
    yield run_id
    for container in containers_of(client, run_id):
        container.remove(force=True)


def containers_of(client: DockerClient, run_id: str) -> list[Any]:
    # sparse: no inspect per container, which raises NotFound for one removed meanwhile
    return list(client.containers.list(all=True, sparse=True,
                                       filters={"label": f"bench.run_id={run_id}"}))


#: A second test of the same profile: its server start is not retried after an abort.
AGAIN = "\n\ndef test_again(llama_server):\n    llama_server.get()\n"


def running(client: DockerClient, run_id: str) -> bool:
    return any(c.status == "running" for c in containers_of(client, run_id))


# --------------------------------------------------------------------------- reaping at start


def dead_pid() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return str(proc.pid)


def test_session_start_reaps_containers_of_dead_runs_once(
        client: DockerClient, run_id: str, bench_project: Any) -> None:
    """A server and a sandbox container whose owners died (SIGKILL: no teardown ran)."""
    labels = {**harness_labels(run_id=run_id, role="server", profile="bench-x"),
              LABEL_OWNER_PID: dead_pid()}
    orphan = client.containers.run(IMAGE, ["300"], entrypoint=["sleep"], detach=True,
                                   name=f"llama-bench-orphan-{run_id}", labels=labels)
    sandbox = client.containers.run(IMAGE, ["300"], entrypoint=["sleep"], detach=True, labels={
        "bench.harness": "llama-bench", "bench.role": "sandbox", "bench.pid": dead_pid(),
        "bench.run_id": run_id})
    project = bench_project(bench_project.profile("bench-smoke"))
    proc = project.start("-n", "2", "--collect-only", "-q", run_id="")
    output = finish(proc)
    assert proc.returncode == 0, output
    assert output.count("llama-bench: removed") == 1, output  # the controller only
    assert f"llama-bench-orphan-{run_id}" in output
    assert "sandbox container(s)" in output
    remaining = {c.id for c in containers_of(client, run_id)}
    assert orphan.id not in remaining
    assert sandbox.id not in remaining


def test_session_start_without_docker_goes_on(bench_project: Any) -> None:
    project = bench_project(bench_project.profile("bench-smoke"))
    proc = project.start("--collect-only", "-q", run_id="",
                         DOCKER_HOST="unix:///nonexistent/docker.sock")
    output = finish(proc)
    assert proc.returncode == 0, output
    assert "test_life[bench-smoke]" in output


LEAKY_TEST = """\
import os, socket

from plugin.containers.client import docker_client


def test_forgets_its_container():
    docker_client().containers.run(
        {image!r}, ["300"], entrypoint=["sleep"], detach=True, labels={{
            "bench.harness": "llama-bench", "bench.run_id": {run_id!r},
            "bench.owner_pid": str(os.getpid()), "bench.owner_host": socket.gethostname(),
            "bench.role": "leak-check"}})
"""


def test_session_end_check_fails_the_run_and_removes_the_leak(
        client: DockerClient, run_id: str, tmp_path: Path) -> None:
    """tests/conftest.py itself, in a session whose only test forgets a container."""
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_leaky.py").write_text(LEAKY_TEST.format(image=IMAGE, run_id=run_id))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"],
                          cwd=tmp_path, env={**clean_env(), "PYTHONPATH": str(ROOT)},
                          text=True, capture_output=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
    assert "leaked containers" in proc.stdout
    assert f"bench.role=leak-check, bench.run_id={run_id}" in proc.stdout
    assert containers_of(client, run_id) == []


# --------------------------------------------------------------------------- interruptions


@pytest.mark.stress
def test_ctrl_c_while_the_server_loads_leaves_no_container(
        client: DockerClient, run_id: str, bench_project: Any) -> None:
    project = bench_project(bench_project.profile("bench-stuck", "stuck.gguf"))
    proc = project.start("-x", run_id=run_id)
    # inside the /health polling: the server answers 503 "Loading model" (held by its pipe)
    wait_until(lambda: support.server_loading(client, run_id), "the stuck server loading",
               proc)
    proc.send_signal(signal.SIGINT)
    output = finish(proc)
    assert proc.returncode == 2, support.last_lines(output)  # pytest's "interrupted"
    assert "KeyboardInterrupt" in output
    assert containers_of(client, run_id) == [], output
    assert "could not remove container" not in output


def test_ctrl_c_while_generating_leaves_no_container(
        client: DockerClient, run_id: str, bench_project: Any) -> None:
    project = bench_project(bench_project.profile("bench-smoke"))
    proc = project.start(run_id=run_id, LIFE_MODE="loop")
    wait_until(lambda: project.records().get("bench-smoke"), "the first answer", proc)
    time.sleep(0.5)  # requests keep going
    proc.send_signal(signal.SIGINT)
    output = finish(proc)
    assert proc.returncode == 2, support.last_lines(output)
    assert containers_of(client, run_id) == [], output


def test_xdist_run_shares_its_run_id_and_ctrl_c_leaves_no_container(
        client: DockerClient, bench_project: Any) -> None:
    """Two workers, one profile each, one run id (no BENCH_RUN_ID: the controller makes it
    and pytest_configure_node hands it over). Then Ctrl-C as a terminal sends it: to the
    whole process group, controller and workers, while both servers generate."""
    project = bench_project(bench_project.profile("bench-smoke-a"),
                            bench_project.profile("bench-smoke-b"))
    proc = project.start("-n", "2", "--dist", "loadgroup", run_id="", LIFE_MODE="loop")
    records = wait_until(lambda: len(project.records()) == 2 and project.records(),
                         "both profiles answering", proc, 90)
    os.killpg(proc.pid, signal.SIGINT)
    output = finish(proc)
    assert proc.returncode != 0, output
    workers = {r["worker"] for r in records.values()}
    assert len(workers) == 2, f"both profiles ran on one worker: {records}"
    run_ids = {r["run_id"] for r in records.values()}
    assert len(run_ids) == 1, records
    assert {r["labels"][LABEL_RUN_ID] for r in records.values()} == run_ids
    assert containers_of(client, run_ids.pop()) == [], output


@pytest.mark.stress
def test_timeout_during_start_fails_the_test_and_leaves_no_container(
        client: DockerClient, run_id: str, bench_project: Any) -> None:
    """pytest-timeout's ``signal`` method raises in the test: every ``finally`` runs."""
    project = bench_project(bench_project.profile("bench-stuck", "stuck.gguf"),
                            bench_project.profile("bench-smoke"), extra_tests=AGAIN)
    # Each test's timer: the stuck start is held by its pipe until it fires; the smoke
    # profile's start and answer fit in it on a loaded machine (about 2 s idle).
    proc = project.start("--timeout", "30", "-rA", run_id=run_id)
    wait_until(lambda: running(client, run_id), "the stuck server's container", proc)
    output = finish(proc)
    assert proc.returncode == 1, output
    assert "Failed: Timeout (>30.0s) from pytest-timeout" in output
    assert "FAILED bench_tests/test_life.py::test_life[bench-stuck]" in output
    # the profile's next test does not wait again: the start is not retried
    assert "FAILED bench_tests/test_life.py::test_again[bench-stuck]" in output
    assert "ServerStartError: the start of [bench-stuck]'s llama-server was aborted in an " \
           "earlier test (Failed: Timeout" in output
    assert "PASSED bench_tests/test_life.py::test_life[bench-smoke]" in output  # it went on
    assert containers_of(client, run_id) == [], output


# --------------------------------------------------------------------------- continue on failure


def test_a_server_that_cannot_start_errors_its_profile_and_the_run_goes_on(
        client: DockerClient, run_id: str, tmp_path: Path, smoke_models: Path,
        bench_project: Any) -> None:
    """The real bench_tests, sandbox and all, with a broken profile first."""
    conf = tmp_path / "models.conf"
    conf.write_text(f"[DEFAULT]\nMODELS_DIR={smoke_models}\nCPU_IMAGE={IMAGE}\n\n"
                    + bench_project.profile("bench-broken", EXTRA_ARGS="-np 1 --no-such-flag",
                                            CTX_SIZE="2048")
                    + "\n" + bench_project.profile("bench-smoke", CTX_SIZE="2048", MAX_TOKENS="64"))
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench_tests", "-k", "humaneval_plus", "-p",
         "no:randomly", "--bench-config", str(conf), "--bench-limit", "3",
         "--bench-reports-dir", str(tmp_path / "reports"), f"--junitxml={junit}",
         "-o", "addopts=", "--html", str(tmp_path / "report.html")],
        cwd=ROOT, env={**clean_env(), "BENCH_RUN_ID": run_id}, text=True,
        capture_output=True, timeout=300)
    output = proc.stdout + proc.stderr
    outcomes = junit_outcomes(junit)
    assert list(outcomes) == ["test_humaneval_plus[bench-broken]",
                              "test_humaneval_plus[bench-smoke]"], output
    kind, message = outcomes["test_humaneval_plus[bench-broken]"]
    assert kind == "error", output
    assert "llama-server exited with code 1 before /health answered 200" in message
    assert "--no-such-flag" in message  # the log tail says which argument
    assert outcomes["test_humaneval_plus[bench-smoke]"] == ("passed", ""), output
    assert proc.returncode == 1, output
    assert containers_of(client, run_id) == []


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "PYTEST_"))}


# --------------------------------------------------------------------------- external server


@pytest.fixture
def server_by_hand(client: DockerClient, smoke_models: Path) -> Iterator[str]:
    """A llama-server container started by hand (harness labels: the leak check sees it)."""
    container = client.containers.run(
        IMAGE, ["-m", "/models/smoke-tiny.gguf", "-c", "2048", "-np", "1", "--host", "0.0.0.0",
                "--port", "8080"],
        detach=True, ports={"8080/tcp": ("127.0.0.1", None)},
        volumes={str(smoke_models): {"bind": "/models", "mode": "ro"}},
        labels=harness_labels(run_id="by-hand", role="by-hand-server"))
    try:
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        container.remove(force=True)


def test_base_url_option_benchmarks_a_running_server_without_starting_one(
        client: DockerClient, run_id: str, server_by_hand: str, tmp_path: Path) -> None:
    since = int(time.time()) - 1
    reports = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "bench_tests", "-k", "bench-smoke and humaneval_plus",
         "-p", "no:randomly", "--bench-base-url", f"{server_by_hand}/v1", "--bench-limit", "3",
         "--bench-reports-dir", str(reports), "-o", "addopts=",
         "--html", str(tmp_path / "report.html")],
        cwd=ROOT, env={**clean_env(), "BENCH_RUN_ID": run_id}, text=True,
        capture_output=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    summary = json.loads((reports / "bench-smoke" / "humaneval" / "summary.json").read_text())
    assert summary["n_tasks"] == 3
    assert summary["requests_sent"] == 3
    assert summary["build_info"] == httpx.get(f"{server_by_hand}/props").json()["build_info"]
    server_log = (reports / "bench-smoke" / "server.log").read_text()
    assert f"external server {server_by_hand}" in server_log
    created = client.events(since=since, until=int(time.time()) + 1, decode=True,
                            filters={"type": "container", "event": "create",
                                     "label": f"bench.run_id={run_id}"})
    assert list(created) == [], "the harness started a server of its own"
    assert containers_of(client, run_id) == []


def test_base_url_option_in_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=ROOT, text=True,
                          capture_output=True, env=clean_env(), timeout=60)
    assert "--bench-base-url=URL" in proc.stdout
    assert "--bench-lock-dir=DIR" in proc.stdout
