"""plugin.server against a real Docker engine and the real llama-server image.

The image is ``$LLAMA_IMAGE`` (default ``local/llama.cpp:server``, built by
``docker/llama-server/build-debian.sh``); models are the tiny smoke model (written into a
temporary folder by ``scripts/make_smoke_model.py``) and the canary shipped in models/canary.
Each server starts in about a second. Every test gets its own run id; a fixture removes
any container still carrying it and fails the test if one was left behind.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from docker.client import DockerClient
from docker.errors import APIError, NotFound

from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults, Profile
from plugin.containers.client import docker_client
from plugin.containers.labels import LABEL_OWNER_HOST, LABEL_OWNER_PID, harness_labels
from plugin.containers.reaper import reap_stale_containers
from plugin.containers.registry import registered_containers
from plugin.errors import ImageMissingError, ServerStartError
from plugin.server.lifecycle import ServerHandle, llama_server
from plugin.server.spec import model_files

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("LLAMA_IMAGE", "local/llama.cpp:server")
SMOKE_SCRIPT = ROOT / "scripts" / "make_smoke_model.py"
HEALTH_TIMEOUT = 60.0
# A crash is seen long before this (about 1 s idle); the bound of a quarter of it leaves
# room for a loaded machine and still shows that the timeout is not waited out.
CRASH_HEALTH_TIMEOUT = 240.0
# Long enough for llama-server to bind its port and log its model load on a loaded
# machine; the pipe never loads, so the outcome is the same at any value.
STUCK_HEALTH_TIMEOUT = 8.0


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def profiles() -> dict[str, Profile]:
    return dict(load_models_conf(ROOT / "models.conf", Defaults(cpu_image=IMAGE)).profiles)


@pytest.fixture(scope="module")
def client() -> Iterator[DockerClient]:
    client = docker_client()
    try:
        client.images.get(IMAGE)
    except NotFound:
        pytest.fail(f"image {IMAGE} missing: build it with docker/llama-server/build-debian.sh")
    yield client
    client.close()


@pytest.fixture
def run_id(client: DockerClient) -> Iterator[str]:
    """A fresh run id; afterwards no container may carry it."""
    run_id = uuid.uuid4().hex
    yield run_id
    leaked = settled_containers(client, run_id)
    for container in leaked:
        with contextlib.suppress(NotFound):
            container.remove(force=True)
    assert not leaked, f"containers left behind: {[c.name for c in leaked]}"


def settled_containers(client: DockerClient, run_id: str, wait_s: float = 30.0) -> list[Any]:
    """The run's containers once removals already under way (a reaper's, a watchdog's:
    Docker answers 409 "removal ... is already in progress" meanwhile) have finished."""
    deadline = time.monotonic() + wait_s
    while True:
        found = containers_of(client, run_id)
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("smoke-models")
    subprocess.run([sys.executable, str(SMOKE_SCRIPT), "--out-dir", str(out_dir)],
                   check=True, capture_output=True)
    out_dir.chmod(0o755)
    return out_dir


@pytest.fixture
def canary(profiles: dict[str, Profile]) -> Profile:
    profile = profiles["bench-canary"]
    if not profile.model_path.exists():
        pytest.skip(f"canary model not found: {profile.model_path} (see models.conf:"
                    f"{profile.key_lines.get('MODELS_DIR')})")
    return profile


def containers_of(client: DockerClient, run_id: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"bench.run_id={run_id}"}))


def wait_for_log(path: Path, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {path} after {timeout} s")


# --------------------------------------------------------------------------- start / stop


@pytest.mark.docker
@pytest.mark.parametrize("model", ["smoke", "canary"])
def test_start_health_chat_props_log_and_removal(
        model: str, client: DockerClient, run_id: str, profiles: dict[str, Profile],
        smoke_dir: Path, tmp_path: Path) -> None:
    if model == "smoke":
        profile = replace(profiles["bench-smoke"], models_dir=smoke_dir)
    else:
        profile = profiles["bench-canary"]
    log_path = tmp_path / "logs" / "server.log"

    with llama_server(profile, log_path=log_path, run_id=run_id, client=client,
                             health_timeout=HEALTH_TIMEOUT) as handle:
        assert handle.base_url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{handle.base_url}/health").status_code == 200
        chat = httpx.post(f"{handle.openai_base_url}/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4,
            "temperature": 0})
        assert chat.status_code == 200, chat.text
        assert chat.json()["choices"][0]["finish_reason"] in ("length", "stop")

        assert str(handle.props["build_info"])
        assert handle.props["model_path"] == f"/models/{profile.model}"
        assert handle.props["default_generation_settings"]["n_ctx"] == profile.ctx_size
        assert handle.props["total_slots"] == 1
        assert 0 < handle.load_time_s < HEALTH_TIMEOUT
        assert handle.image == IMAGE
        assert handle.image_id == client.images.get(IMAGE).id
        assert handle.is_alive()

        container = client.containers.get(handle.container_id)
        assert container.name == handle.container_name == f"llama-bench-{profile.name}-{run_id}"
        assert container.labels["bench.owner_pid"] == str(os.getpid())
        assert container.attrs["HostConfig"]["PortBindings"]["8080/tcp"][0]["HostIp"] == \
            "127.0.0.1"
        assert container.attrs["Mounts"][0]["RW"] is False
        assert handle.container_id in registered_containers()
        assert "listening on" in wait_for_log(log_path, "listening on")
        assert "listening on" in handle.log_tail()

    assert containers_of(client, run_id) == []
    assert handle.container_id not in registered_containers()
    assert not handle.is_alive()
    assert "load_model" in log_path.read_text()


@pytest.mark.docker
def test_container_removed_when_the_block_raises(
        client: DockerClient, run_id: str, canary: Profile, tmp_path: Path) -> None:
    handles: list[ServerHandle] = []

    def fail_inside() -> None:
        with llama_server(canary, log_path=tmp_path / "server.log", run_id=run_id,
                                 client=client, health_timeout=HEALTH_TIMEOUT) as handle:
            handles.append(handle)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside()
    assert handles, "the server never started"
    assert containers_of(client, run_id) == []
    with pytest.raises(NotFound):
        client.containers.get(handles[0].container_id)


@pytest.mark.docker
def test_teardown_survives_a_container_removed_from_outside(
        client: DockerClient, run_id: str, canary: Profile, tmp_path: Path) -> None:
    with llama_server(canary, log_path=tmp_path / "server.log", run_id=run_id,
                             client=client, health_timeout=HEALTH_TIMEOUT) as handle:
        client.api.remove_container(handle.container_id, force=True)
        assert not handle.is_alive()
    assert handle.container_id not in registered_containers()


# --------------------------------------------------------------------------- start failures


@pytest.mark.docker
def test_crash_reports_exit_code_and_log_tail(
        client: DockerClient, run_id: str, canary: Profile, tmp_path: Path) -> None:
    broken = replace(canary, extra_args=("--definitely-not-a-flag",))
    log_path = tmp_path / "server.log"
    started = time.monotonic()
    with pytest.raises(ServerStartError) as info, llama_server(
            broken, log_path=log_path, run_id=run_id, client=client,
            health_timeout=CRASH_HEALTH_TIMEOUT):
        pytest.fail("must not become healthy")
    message = str(info.value)
    assert time.monotonic() - started < CRASH_HEALTH_TIMEOUT / 4, \
        "a crash must not wait for the health timeout"
    assert "llama-server exited with code 1 before /health answered 200" in message
    assert "error: invalid argument: --definitely-not-a-flag" in message
    assert f"check EXTRA_ARGS at {canary.where('EXTRA_ARGS')}" in message
    assert "polled: GET http://127.0.0.1:" in message
    assert containers_of(client, run_id) == []


@pytest.mark.docker
@pytest.mark.stress
def test_health_timeout_reports_what_was_polled_and_log_tail(
        client: DockerClient, run_id: str, canary: Profile, tmp_path: Path) -> None:
    """A real llama-server that never becomes healthy, no stub.

    The model "file" is a named pipe nobody writes to: llama-server opens it, blocks in
    the model load forever and /health keeps answering 503 "Loading model".
    """
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    os.mkfifo(models_dir / "never-loads.gguf")
    stuck = replace(canary, models_dir=models_dir, model="never-loads.gguf")
    with pytest.raises(ServerStartError) as info, llama_server(
            stuck, log_path=tmp_path / "server.log", run_id=run_id, client=client,
            health_timeout=STUCK_HEALTH_TIMEOUT, poll_interval=0.2):
        pytest.fail("must not become healthy")
    message = str(info.value)
    assert "llama-server did not become healthy within 8 s" in message
    assert "polled: GET http://127.0.0.1:" in message
    assert '/health every <= 0.2 s' in message
    assert 'last answer: HTTP 503 {"error":{"message":"Loading model"' in message
    assert "loading model '/models/never-loads.gguf'" in message  # from the log tail
    assert f"raise HEALTH_TIMEOUT ({canary.where('HEALTH_TIMEOUT')})" in message
    assert containers_of(client, run_id) == []


@pytest.mark.docker
def test_missing_image_is_reported_without_creating_a_container(
        client: DockerClient, run_id: str, canary: Profile, tmp_path: Path) -> None:
    absent = replace(canary, image="local/no-such-image:never")
    with pytest.raises(ImageMissingError, match=r"docker pull local/no-such-image:never"), \
            llama_server(absent, log_path=tmp_path / "log", run_id=run_id, client=client):
        pytest.fail("must not start")
    assert containers_of(client, run_id) == []


@pytest.mark.docker
def test_gpu_request_reaches_docker_and_fails_cleanly_without_gpu(
        client: DockerClient, run_id: str, profiles: dict[str, Profile], tmp_path: Path) -> None:
    """bench-qwen3-coder's device request (GPUs 0,1) goes to the Engine; this machine has no
    NVIDIA runtime, so the start fails - with the fix in the message and nothing left over."""
    profile = replace(profiles["bench-qwen3-coder"], models_dir=tmp_path, image=IMAGE)
    for shard in model_files(profile):
        shard.parent.mkdir(parents=True, exist_ok=True)
        shard.touch()
    with pytest.raises(ServerStartError) as info, llama_server(
            profile, log_path=tmp_path / "log", run_id=run_id, client=client):
        pytest.fail("no GPU here")
    message = str(info.value)
    assert 'could not select device driver "" with capabilities: [[gpu]]' in message
    assert "NVIDIA Container Toolkit" in message
    assert containers_of(client, run_id) == []


# --------------------------------------------------------------------------- external server


@pytest.mark.docker
def test_base_url_profile_gets_a_handle_without_a_container(
        client: DockerClient, run_id: str, canary: Profile, tmp_path: Path) -> None:
    with llama_server(canary, log_path=tmp_path / "server.log", run_id=run_id,
                             client=client, health_timeout=HEALTH_TIMEOUT) as running:
        external = replace(canary, base_url=f"{running.base_url}/v1/")
        with llama_server(external, log_path=tmp_path / "external.log",
                                 run_id=run_id) as handle:
            assert handle.base_url == running.base_url
            assert handle.container_id == handle.image_id == ""
            assert handle.props["build_info"] == running.props["build_info"]
            assert any("canary-humaneval" in model for model in handle.models), handle.models
            assert handle.is_alive()
            assert "no container" in handle.log_tail()
        assert running.is_alive()


def test_unreachable_base_url_says_where_it_came_from(
        profiles: dict[str, Profile], tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    external = replace(profiles["bench-canary"], base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(ServerStartError) as info, llama_server(
            external, log_path=tmp_path / "log", run_id="x", health_timeout=0.5):
        pytest.fail("nothing listens there")
    assert f"external server http://127.0.0.1:{port} did not answer" in str(info.value)
    assert "ConnectError" in str(info.value)


# --------------------------------------------------------------------------- dying owners


def _run_owner(code: str, *, timeout: float = 60) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})


OWNER = """
    import sys, time
    from pathlib import Path
    from plugin.config.profile import Defaults
    from plugin.config.models_conf import load_models_conf
    from plugin.server.lifecycle import llama_server
    conf = load_models_conf("models.conf", Defaults(cpu_image={image!r}))
    profile = conf.profiles["bench-canary"]
    with llama_server(profile, log_path=Path({log!r}), run_id={run_id!r}) as handle:
        print(handle.container_id, flush=True)
        time.sleep(120)
"""


@pytest.mark.docker
@pytest.mark.usefixtures("canary")
def test_sigterm_to_the_owner_removes_its_container(
        client: DockerClient, run_id: str, tmp_path: Path) -> None:
    owner = _run_owner(OWNER.format(image=IMAGE, log=str(tmp_path / "log"), run_id=run_id))
    try:
        assert owner.stdout is not None
        container_id = owner.stdout.readline().strip()
        assert container_id, "the owner did not start a server"
        owner.terminate()
        assert owner.wait(timeout=30) == -15
    finally:
        owner.kill()
    with pytest.raises(NotFound):
        client.containers.get(container_id)


@pytest.mark.docker
@pytest.mark.usefixtures("canary")
def test_container_of_a_killed_owner_is_reaped(
        client: DockerClient, run_id: str, tmp_path: Path) -> None:
    """SIGKILL (like pytest-timeout's thread method) runs no cleanup: the reaper must."""
    owner = _run_owner(OWNER.format(image=IMAGE, log=str(tmp_path / "log"), run_id=run_id))
    try:
        assert owner.stdout is not None
        container_id = owner.stdout.readline().strip()
        assert container_id, "the owner did not start a server"
    finally:
        owner.kill()
        owner.wait(timeout=30)
    still_there = _exists(client, container_id)
    reaped = reap_stale_containers(client)
    # Another process may reap it first (xdist workers, the plugin at session start).
    assert f"llama-bench-bench-canary-{run_id}" in reaped or not still_there
    # the owner's watchdog may be removing it at the same time (409 "in progress")
    assert settled_containers(client, run_id) == []


def _sleeper(client: DockerClient, run_id: str, name: str, **labels: str) -> Any:
    all_labels = {**harness_labels(run_id=run_id, role="server", profile="bench-x"),
                  **labels}
    return client.containers.run(IMAGE, ["300"], entrypoint=["sleep"], detach=True,
                                 name=f"{name}-{run_id[:8]}", labels=all_labels)


def _dead_pid() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return str(proc.pid)


@pytest.mark.docker
def test_reap_removes_only_dead_owners_of_this_host(client: DockerClient, run_id: str) -> None:
    dead = _sleeper(client, run_id, "reap-dead", **{LABEL_OWNER_PID: _dead_pid()})
    live = _sleeper(client, run_id, "reap-live")
    other_host = _sleeper(client, run_id, "reap-other-host",
                          **{LABEL_OWNER_PID: _dead_pid(),
                             LABEL_OWNER_HOST: "some-other-machine"})
    try:
        # (Other processes on this machine reap too: the container may be gone already.)
        assert dead.name not in reap_stale_containers(client, older_than_s=3600)
        reaped = reap_stale_containers(client)
        # Another process may reap it first (xdist workers, the plugin at session start).
        assert dead.name in reaped or not _exists(client, dead.id)
        assert live.name not in reaped
        assert other_host.name not in reaped
        assert not _exists(client, dead.id)
        assert client.containers.get(live.id).status == "running"
        assert client.containers.get(other_host.id).status == "running"
    finally:
        for container in (dead, live, other_host):
            _remove_quietly(client, container.id)


def _exists(client: DockerClient, container_id: str) -> bool:
    try:
        client.api.inspect_container(container_id)
    except NotFound:
        return False
    return True


def _remove_quietly(client: DockerClient, container_id: str) -> None:
    """Remove and wait until gone (another reaper may be removing it already: 409)."""
    with contextlib.suppress(NotFound, APIError):
        client.api.remove_container(container_id, force=True)
    deadline = time.monotonic() + 15
    while _exists(client, container_id) and time.monotonic() < deadline:
        time.sleep(0.1)
