"""Which llama-server image a profile runs, when it is not on the engine.

* The stock CPU image (``ghcr.io/ggml-org/llama.cpp:server``, models.conf's CPU_IMAGE)
  falls back to the locally built ``local/llama.cpp:server``, said once per engine.
* An image the user chose (command line, environment) is never swapped; a failed pull
  is one error naming where the image came from and both fixes.
* A missing image is pulled through the engine from a real registry: Debian's
  ``docker-registry`` serving on loopback (``make test`` installs it); the plain
  ``pytest bench_tests`` of a tiny project then runs on the pulled image.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import support
from docker.client import DockerClient
from docker.errors import ImageNotFound

from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults, Profile
from plugin.containers.client import docker_client
from plugin.errors import ImageMissingError
from plugin.server.images import DEFAULT_CPU_IMAGE, LOCAL_CPU_IMAGE, _said, ensure_image

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]
LOCAL = os.environ.get("LLAMA_IMAGE", LOCAL_CPU_IMAGE)


@pytest.fixture(scope="module")
def client() -> Iterator[DockerClient]:
    client = docker_client()
    yield client
    client.close()


def _profile(tmp_path: Path, defaults: Defaults, image_line: str = "") -> Profile:
    conf = tmp_path / "models.conf"
    conf.write_text(f"[DEFAULT]\nCPU_IMAGE={DEFAULT_CPU_IMAGE}\n\n[bench-x]\nNAME=x\n"
                    f"MODEL=m.gguf\nMODELS_DIR={tmp_path}\nCTX_SIZE=512\nN_GPU_LAYERS=0\n"
                    f"{image_line}", encoding="utf-8")
    return load_models_conf(conf, defaults).profiles["bench-x"]


def _absent(client: DockerClient, image: str) -> None:
    try:
        client.images.get(image)
    except ImageNotFound:
        return
    pytest.skip(f"{image} is on this engine: the fallback cannot be seen")


def test_the_stock_cpu_image_falls_back_to_the_local_build_said_once(
        client: DockerClient, tmp_path: Path) -> None:
    _absent(client, DEFAULT_CPU_IMAGE)
    if LOCAL != LOCAL_CPU_IMAGE:
        pytest.skip("the local image has another name here")
    profile = _profile(tmp_path, Defaults())
    assert profile.image == DEFAULT_CPU_IMAGE
    _said.clear()
    said: list[str] = []
    chosen = ensure_image(client, profile, say=said.append)
    again = ensure_image(client, profile, say=said.append)
    assert chosen.image == again.image == LOCAL_CPU_IMAGE
    assert len(said) == 1, said
    assert DEFAULT_CPU_IMAGE in said[0]
    assert LOCAL_CPU_IMAGE in said[0]


def test_a_chosen_image_is_not_swapped_and_a_failed_pull_names_both_fixes(
        client: DockerClient, tmp_path: Path) -> None:
    """Nothing listens on 127.0.0.1:1: the pull fails at once, on any machine."""
    image = "127.0.0.1:1/bench/llama.cpp:never"
    profile = _profile(tmp_path, Defaults(cpu_image=image, origins={
        "cpu-image": "command line --bench-cpu-image"}))
    assert profile.where("CPU_IMAGE") == "command line --bench-cpu-image"
    with pytest.raises(ImageMissingError) as info:
        ensure_image(client, profile)
    message = str(info.value)
    assert f"image {image} is not on the Docker engine and could not be pulled" in message
    assert "CPU_IMAGE from command line --bench-cpu-image" in message
    assert f"docker pull {image}" in message
    assert "make images" in message
    assert "--bench-cpu-image local/llama.cpp:server" in message
    assert len(message.splitlines()) <= 10


def test_an_image_from_models_conf_is_blamed_on_its_line(tmp_path: Path) -> None:
    profile = _profile(tmp_path, Defaults(), "IMAGE=registry.invalid/x:y\n")
    assert profile.where("IMAGE") == f"{tmp_path / 'models.conf'}:10"


# --------------------------------------------------------------------------- a registry


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Debian's docker-registry on a loopback port, storing into a temporary folder."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry not installed (make test installs it)")
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = root / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root}/data\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n", encoding="utf-8")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://{address}/v2/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "docker-registry exited"
            assert time.monotonic() < deadline, "docker-registry did not answer in 60 s"
            time.sleep(0.1)
        yield address
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def pushed(client: DockerClient, registry: str) -> Iterator[str]:
    """The local llama-server image pushed to the registry, and its tag removed here."""
    image = f"{registry}/bench/llama.cpp:pull-{uuid.uuid4().hex[:8]}"
    repository, tag = image.rsplit(":", 1)
    client.images.get(LOCAL).tag(repository, tag)
    for event in client.api.push(repository, tag=tag, stream=True, decode=True):
        assert "error" not in event, event
    client.images.remove(image)
    try:
        yield image
    finally:
        try:
            client.images.remove(image)
        except ImageNotFound:
            pass


def test_a_missing_image_is_pulled_from_a_registry(client: DockerClient, pushed: str,
                                                    tmp_path: Path) -> None:
    profile = _profile(tmp_path, Defaults(cpu_image=pushed))
    said: list[str] = []
    assert ensure_image(client, profile, say=said.append) == profile
    assert client.images.get(pushed).id == client.images.get(LOCAL).id
    assert said[0] == f"llama-bench: pulling {pushed}"
    assert said[-1] == f"llama-bench: pulled {pushed}"


def test_plain_pytest_bench_tests_runs_on_a_pulled_image(bench_project: Any, pushed: str) -> None:
    project = bench_project(bench_project.profile("bench-pulled", CPU_IMAGE=pushed))
    proc = project.start("-rA", run_id="")
    output = support.finish(proc, 300)
    assert proc.returncode == 0, output
    assert f"llama-bench: pulling {pushed}" in output
    assert "PASSED bench_tests/test_life.py::test_life[bench-pulled]" in output
