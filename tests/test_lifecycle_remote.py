"""Remote Docker hosts, against a SECOND real Docker engine on this machine.

The ``second_engine`` fixture starts its own ``dockerd`` (own data root, exec root,
pidfile, unix socket, and a TCP socket on 127.0.0.1), with its own bridge (an interface
``llb<pid>`` on a free 172.31.x.0/24, no iptables: the userland proxy publishes ports), and
loads the llama-server image into it with ``docker save | docker -H ... load``. It skips,
saying why, when that is not possible (not root, no ``dockerd`` or ``ip``). At the end the
daemon is stopped and its bridge and directories removed.

The engine is reached as ``tcp://127.0.0.1:<port>``: the harness treats it as a remote
host (ports published on 0.0.0.0 there, base URL from the host name). The model files
are found at the same paths because the "remote" host is this machine.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from docker.client import DockerClient

from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults, Profile
from plugin.containers.client import docker_client
from plugin.containers.labels import LABEL_RUN_ID
from plugin.errors import DockerUnavailableError
from plugin.server.lazy import LazyServer, engine_key
from plugin.server.lifecycle import llama_server

pytestmark = pytest.mark.docker

IMAGE = os.environ.get("LLAMA_IMAGE", "local/llama.cpp:server")
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class Engine:
    tcp: str  # tcp://127.0.0.1:<port>
    unix: str  # unix:///.../docker.sock
    client: DockerClient


# --------------------------------------------------------------------------- the second engine


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "a second dockerd needs root"
    for tool in ("dockerd", "docker", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    try:
        docker_client(timeout=10).images.get(IMAGE)
    except Exception as exc:
        return f"the first engine or image {IMAGE} is not available: {exc}"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _free_subnet() -> ipaddress.IPv4Network:
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    for third in range(200, 255):
        net = ipaddress.IPv4Network(f"172.31.{third}.0/24")
        if f"172.31.{third}." not in used:
            return net
    pytest.skip("no free 172.31.x.0/24 subnet for the second engine's bridge")


def _sh(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def _bridge() -> Iterator[str]:
    name = f"llb{os.getpid() % 100000}"
    net = _free_subnet()
    gateway = f"{next(net.hosts())}/{net.prefixlen}"
    for cmd in (("ip", "link", "add", "name", name, "type", "bridge"),
                ("ip", "addr", "add", gateway, "dev", name),
                ("ip", "link", "set", name, "up")):
        done = _sh(*cmd)
        if done.returncode != 0:
            _sh("ip", "link", "del", name)
            pytest.skip(f"cannot create bridge {name} for the second engine: {done.stderr}")
    try:
        yield name
    finally:
        _sh("ip", "link", "del", name)


@contextlib.contextmanager
def _dockerd(root: Path, bridge: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    log = (root / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"),
         "--pidfile", str(root / "dockerd.pid"), "-H", f"unix://{root}/docker.sock",
         "-H", f"tcp://127.0.0.1:{port}", "--bridge", bridge, "--iptables=false",
         "--ip-masq=false", "--ip-forward=false"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


def _connect(url: str, proc: subprocess.Popen[bytes], log: Path) -> DockerClient:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            return docker_client(url, timeout=30)
        except DockerUnavailableError:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                pytest.skip(f"the second dockerd did not come up: {tail}")
            time.sleep(0.3)


@pytest.fixture(scope="module")
def second_engine() -> Iterator[Engine]:
    reason = _why_not()
    if reason:
        pytest.skip(f"no second Docker engine: {reason}")
    root = Path(tempfile.mkdtemp(prefix="llb-engine-"))
    port = _free_port()
    try:
        with _bridge() as bridge, _dockerd(root, bridge, port) as proc:
            client = _connect(f"tcp://127.0.0.1:{port}", proc, root / "dockerd.log")
            try:
                _load_image(client, root)
                yield Engine(f"tcp://127.0.0.1:{port}", f"unix://{root}/docker.sock", client)
            finally:
                for container in client.containers.list(all=True):
                    container.remove(force=True)
                client.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _load_image(client: DockerClient, root: Path) -> None:
    save = subprocess.Popen(["docker", "save", IMAGE], stdout=subprocess.PIPE)
    load = subprocess.run(["docker", "-H", f"unix://{root}/docker.sock", "load"],
                          stdin=save.stdout, capture_output=True, text=True, timeout=300)
    save.wait(timeout=60)
    if load.returncode != 0 or save.returncode != 0:
        pytest.skip(f"cannot load {IMAGE} into the second engine: {load.stderr}")
    client.images.get(IMAGE)


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def smoke(smoke_models: Path) -> Profile:
    profile = load_models_conf(Path(__file__).parent.parent / "models.conf",
                               Defaults(cpu_image=IMAGE)).profiles["bench-smoke"]
    return replace(profile, models_dir=smoke_models)


@pytest.fixture
def run_id() -> str:
    return f"remote-{uuid.uuid4().hex[:12]}"


def on_engine(client: DockerClient, run_id: str) -> list[Any]:
    return list(client.containers.list(all=True, filters={"label": f"bench.run_id={run_id}"}))


def test_profile_docker_host_starts_the_server_on_that_engine(
        second_engine: Engine, smoke: Profile, run_id: str, tmp_path: Path) -> None:
    local = docker_client()
    profile = replace(smoke, docker_host=second_engine.tcp)
    with llama_server(profile, log_path=tmp_path / "server.log",
                             run_id=run_id) as handle:
        (container,) = on_engine(second_engine.client, run_id)
        assert on_engine(local, run_id) == []  # not on the default engine
        binding = container.attrs["HostConfig"]["PortBindings"]["8080/tcp"][0]
        assert binding["HostIp"] == "0.0.0.0"  # reachable from the network over there
        assert handle.base_url.startswith("http://127.0.0.1:")  # the engine's host name
        answer = httpx.post(f"{handle.openai_base_url}/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
        assert answer.status_code == 200, answer.text
        assert handle.props["model_path"] == "/models/smoke-tiny.gguf"
    assert on_engine(second_engine.client, run_id) == []
    local.close()


def test_bench_docker_host_option_and_xdist_run_a_profile_per_engine(
        second_engine: Engine, bench_project: Any, run_id: str) -> None:
    """bench-here pins the default engine; bench-there takes --bench-docker-host. Under
    xdist both run at the same time, each on its engine; nothing is left on either."""
    local_socket = "unix:///var/run/docker.sock"
    project = bench_project(bench_project.profile("bench-here", DOCKER_HOST=local_socket),
                            bench_project.profile("bench-there"))
    proc = project.start("-n", "2", "--dist", "loadgroup", "--bench-docker-host",
                         second_engine.tcp, run_id=run_id, LIFE_HOLD="3")
    output = proc.communicate(timeout=180)[0]
    assert proc.returncode == 0, output
    here, there = project.records()["bench-here"], project.records()["bench-there"]
    assert here["up"] < there["down"], "the profiles did not run at the same time"
    assert there["up"] < here["down"], "the profiles did not run at the same time"
    local = docker_client()
    assert there["container_id"] not in {c.id for c in local.containers.list(all=True)}
    assert here["labels"][LABEL_RUN_ID] == there["labels"][LABEL_RUN_ID]
    assert on_engine(local, run_id) == on_engine(second_engine.client, run_id) == []
    local.close()


def test_gpu_locks_are_per_engine(second_engine: Engine, smoke: Profile,
                                  tmp_path: Path) -> None:
    """GPU 0 of this engine and GPU 0 of the other are different GPUs: the lock folders
    differ (by engine identity, not URL), so both profiles may hold "their" GPU 0."""
    local = docker_client()
    local_key = engine_key(local, None)
    assert local_key == engine_key(docker_client("unix:///var/run/docker.sock"), None)
    assert engine_key(second_engine.client, second_engine.tcp) != local_key
    assert engine_key(docker_client(second_engine.unix), None) == engine_key(
        second_engine.client, second_engine.tcp)  # same engine, other URL: same locks

    held: list[str] = []
    servers = []
    for client, host in ((local, None), (second_engine.client, second_engine.tcp)):
        profile = replace(smoke, gpus=("0",), docker_host=host)
        lazy = LazyServer(profile, log_path=tmp_path / "log", run_id="x", client=client,
                          lock_dir=tmp_path)
        lazy._lock_gpus()  # the lock step of get(), without a GPU container to start
        servers.append(lazy)
        held.append(engine_key(client, host))
    for lazy in servers:
        assert lazy.lock_wait_s < 1.0
        lazy.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(held)
    local.close()
