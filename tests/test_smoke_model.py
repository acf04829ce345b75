"""The tiny smoke GGUF models, checked against the real llama-server image.

The docker-marked tests start ``$LLAMA_IMAGE`` (default ``local/llama.cpp:server``, built
by ``docker/llama-server/build-debian.sh``) with freshly written smoke models and check:

* ``smoke-tiny.gguf``: /health becomes 200 and /v1/chat/completions answers;
* ``smoke-tiny-think.gguf`` with ``--jinja --reasoning-format deepseek``: empty
  ``content``, everything in ``reasoning_content``, ``finish_reason`` ``length`` (the
  GLM-4.7-Flash failure); with ``enable_thinking: false`` the text lands in ``content``.

Containers carry the label ``bench.harness=llama-bench-test`` and are always removed.
"""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "scripts" / "make_smoke_model.py"
IMAGE = os.environ.get("LLAMA_IMAGE", "local/llama.cpp:server")
LABEL_KEY = "bench.harness"
LABEL_VALUE = "llama-bench-test"
STARTUP_TIMEOUT_S = 60.0
MAX_TOKENS = 20
SERVER_ARGS = ("-c", "2048", "--host", "0.0.0.0", "--port", "8080")


def make_models(out_dir: Path) -> None:
    subprocess.run(
        [sys.executable, str(SCRIPT), "--out-dir", str(out_dir)],
        check=True,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out_dir = tmp_path_factory.mktemp("smoke-models")
    make_models(out_dir)
    out_dir.chmod(0o755)
    return out_dir


def test_smoke_models_are_reproducible(models_dir: Path, tmp_path: Path) -> None:
    make_models(tmp_path)
    for name in ("smoke-tiny.gguf", "smoke-tiny-think.gguf"):
        assert filecmp.cmp(models_dir / name, tmp_path / name, shallow=False), name


def test_smoke_model_metadata(models_dir: Path) -> None:
    gguf = pytest.importorskip("gguf")
    reader = gguf.GGUFReader(models_dir / "smoke-tiny-think.gguf")
    fields = reader.fields
    arch = fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "llama"
    template_field = fields["tokenizer.chat_template"]
    template = bytes(template_field.parts[template_field.data[0]]).decode()
    assert "<think>" in template
    assert "enable_thinking" in template
    assert "reasoning_content" in template
    merges = fields["tokenizer.ggml.merges"]
    assert len(merges.data) >= 1, "llama.cpp refuses a BPE vocabulary without merges"


# --------------------------------------------------------------------------- docker


@dataclass(frozen=True)
class Server:
    """A running llama-server container."""

    base_url: str
    container: Any

    def chat(self, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": "Write a Python function add(a, b)."}],
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "top_k": 1,
            "top_p": 1.0,
            "seed": 42,
            **extra,
        }
        response = httpx.post(f"{self.base_url}/v1/chat/completions", json=body, timeout=60.0)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # any failure to reach the daemon means: no Docker here
        pytest.skip(f"Docker daemon not reachable: {exc}")
    try:
        client.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"image {IMAGE} missing: run docker/llama-server/build-debian.sh")
    yield client
    client.close()


def wait_healthy(container: Any, base_url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        container.reload()
        if container.status in {"exited", "dead"}:
            logs = container.logs(tail=40).decode(errors="replace")
            pytest.fail(f"llama-server exited during startup:\n{logs}")
        try:
            response = httpx.get(f"{base_url}/health", timeout=2.0)
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.2)
    logs = container.logs(tail=40).decode(errors="replace")
    pytest.fail(f"/health not 200 after {STARTUP_TIMEOUT_S}s (last: {last}):\n{logs}")


@pytest.fixture(scope="module")
def start_server(docker_client: Any, models_dir: Path) -> Iterator[Callable[..., Server]]:
    containers: list[Any] = []

    def start(model: str, *args: str) -> Server:
        container = docker_client.containers.run(
            IMAGE,
            command=["-m", f"/models/{model}", *SERVER_ARGS, *args],
            detach=True,
            name=f"llama-bench-test-{uuid.uuid4().hex[:10]}",
            labels={LABEL_KEY: LABEL_VALUE},
            ports={"8080/tcp": ("127.0.0.1", None)},
            volumes={str(models_dir): {"bind": "/models", "mode": "ro"}},
        )
        containers.append(container)
        container.reload()
        host_port = container.ports["8080/tcp"][0]["HostPort"]
        base_url = f"http://127.0.0.1:{host_port}"
        wait_healthy(container, base_url)
        return Server(base_url=base_url, container=container)

    try:
        yield start
    finally:
        for container in containers:
            try:
                container.remove(force=True)
            except Exception as exc:  # keep removing the others
                print(f"could not remove container {container.name}: {exc}", file=sys.stderr)


@pytest.fixture(scope="module")
def plain_server(start_server: Callable[..., Server]) -> Server:
    return start_server("smoke-tiny.gguf")


@pytest.fixture(scope="module")
def think_server(start_server: Callable[..., Server]) -> Server:
    return start_server("smoke-tiny-think.gguf", "--jinja", "--reasoning-format", "deepseek")


@pytest.mark.docker
def test_plain_model_serves_chat(plain_server: Server) -> None:
    assert httpx.get(f"{plain_server.base_url}/health", timeout=5.0).json() == {"status": "ok"}
    data = plain_server.chat()
    choice = data["choices"][0]
    assert isinstance(choice["message"]["content"], str)
    assert choice["message"]["content"] != ""
    assert choice["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == MAX_TOKENS
    assert data["timings"]["predicted_n"] == MAX_TOKENS
    assert data["system_fingerprint"].startswith("b")


@pytest.mark.docker
def test_plain_model_props(plain_server: Server) -> None:
    props = httpx.get(f"{plain_server.base_url}/props", timeout=5.0).json()
    assert props["build_info"].startswith("b")
    assert props["model_path"] == "/models/smoke-tiny.gguf"
    assert "<|im_start|>" in props["chat_template"]
    assert props["default_generation_settings"]["n_ctx"] == 2048


@pytest.mark.docker
def test_plain_model_is_deterministic_when_greedy(plain_server: Server) -> None:
    first = plain_server.chat(cache_prompt=False)["choices"][0]["message"]["content"]
    second = plain_server.chat(cache_prompt=False)["choices"][0]["message"]["content"]
    assert first == second


@pytest.mark.docker
def test_think_model_reproduces_empty_content(think_server: Server) -> None:
    data = think_server.chat()
    choice = data["choices"][0]
    message = choice["message"]
    assert message["content"] == ""
    assert message.get("reasoning_content")
    assert choice["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == MAX_TOKENS


@pytest.mark.docker
def test_think_model_without_thinking_answers_in_content(think_server: Server) -> None:
    data = think_server.chat(chat_template_kwargs={"enable_thinking": False})
    message = data["choices"][0]["message"]
    assert message["content"]
    assert not message.get("reasoning_content")
