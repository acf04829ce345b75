"""Generation against a real llama-server container (tiny smoke model).

Requests are counted server-side: llama-server's /metrics ``prompt_tokens_total`` grows
by each request's prompt (``cache_prompt`` is off), so "no request" means no growth.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from support import prompt_tokens_total

import docker
from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults
from plugin.errors import ServerDiedError
from plugin.generation.client import Retry, generate
from plugin.generation.request import Sampling
from plugin.generation.store import CompletionStore
from plugin.server.lifecycle import llama_server

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("LLAMA_IMAGE", "local/llama.cpp:server")
DATASET = ROOT.parent / "shared/datasets/HumanEvalPlus-v0.1.10.jsonl.gz"
MODELS = ROOT / "build/models"
LABELS = {"bench.harness": "llama-bench", "bench.role": "test-server"}


def _prompts(n: int) -> dict[str, str]:
    with gzip.open(DATASET, "rt", encoding="utf-8") as fh:
        tasks = [json.loads(line) for _, line in zip(range(n), fh, strict=False)]
    return {t["task_id"]: t["prompt"] for t in tasks}


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    conf = tmp_path_factory.mktemp("conf") / "models.conf"
    conf.write_text(f"[bench-gen]\nNAME=gen\nMODEL=smoke-tiny.gguf\nMODELS_DIR={MODELS}\n"
                    "CTX_SIZE=2048\nN_GPU_LAYERS=0\nFIT=off\nMAX_TOKENS=16\n"
                    "EXTRA_ARGS=-np 1 -t 1 --metrics\n", encoding="utf-8")
    return load_models_conf(conf, Defaults(cpu_image=IMAGE)).profiles["bench-gen"]


@pytest.fixture(scope="module")
def server(profile, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "server.log"
    with llama_server(profile, log_path=log, run_id="test-generation") as handle:
        yield handle


def test_unchanged_rerun_sends_no_request(server, tmp_path):
    prompts = _prompts(6)
    store = tmp_path / "completions.jsonl"
    before = prompt_tokens_total(server.base_url)
    first, progress = generate(server.base_url, prompts, Sampling(max_tokens=16), store, "fp1")
    after_first = prompt_tokens_total(server.base_url)
    assert progress.reused == 0
    assert after_first - before == sum(c.prompt_tokens for c in first.values()) > 0

    again, progress = generate(server.base_url, prompts, Sampling(max_tokens=16), store, "fp1")
    assert progress.reused == 6
    assert prompt_tokens_total(server.base_url) == after_first  # server saw nothing
    assert {t: c.content for t, c in again.items()} == {t: c.content for t, c in first.items()}


def test_changed_fingerprint_regenerates_everything(server, tmp_path):
    prompts = _prompts(4)
    store = tmp_path / "completions.jsonl"
    generate(server.base_url, prompts, Sampling(max_tokens=16), store, "fp-a")
    before = prompt_tokens_total(server.base_url)
    fresh, progress = generate(server.base_url, prompts, Sampling(max_tokens=8), store, "fp-b")
    assert progress.reused == 0
    assert prompt_tokens_total(server.base_url) - before == sum(
        c.prompt_tokens for c in fresh.values())
    assert all(c.completion_tokens <= 8 for c in fresh.values())


KILLED_RUN = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from plugin.generation.request import Sampling
from plugin.generation.client import generate
prompts = {prompts!r}
def slow(completion, progress):
    time.sleep(0.3)  # leave the test time to kill us between two answers
generate({url!r}, prompts, Sampling(max_tokens=16), Path({store!r}), "fp-kill",
         on_completion=slow)
"""


def test_resume_after_kill_sends_only_the_remaining_requests(server, tmp_path):
    prompts = _prompts(12)
    store = tmp_path / "completions.jsonl"
    code = KILLED_RUN.format(root=str(ROOT), prompts=prompts, url=server.base_url,
                             store=str(store))
    child = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if store.exists() and len(store.read_text().splitlines()) >= 4:
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    done = CompletionStore(store).load("fp-kill")
    assert 4 <= len(done) < 12, "the kill should land mid-run"

    before = prompt_tokens_total(server.base_url)
    results, progress = generate(server.base_url, prompts, Sampling(max_tokens=16), store,
                                 "fp-kill")
    assert progress.reused == len(done)
    sent = [results[t] for t in prompts if t not in done]
    assert len(sent) == 12 - len(done)
    assert prompt_tokens_total(server.base_url) - before == sum(c.prompt_tokens for c in sent)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fixed_port_server():
    """A server on a fixed host port, so a restart keeps its address (the harness's own
    containers use a Docker-assigned port)."""
    client = docker.from_env()
    port = _free_port()
    container = client.containers.run(
        IMAGE, ["-m", "/models/smoke-tiny.gguf", "-c", "2048", "-ngl", "0", "-np", "1",
                "--host", "0.0.0.0", "--port", "8080"],
        detach=True, labels=LABELS, ports={"8080/tcp": ("127.0.0.1", port)},
        volumes={str(MODELS): {"bind": "/models", "mode": "ro"}})
    url = f"http://127.0.0.1:{port}"
    _wait_healthy(url)
    try:
        yield container, url
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
        client.close()


def _wait_healthy(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} never healthy")


def _running(container) -> bool:
    try:
        container.reload()
    except docker.errors.NotFound:  # removed meanwhile (a reaper of another run)
        return False
    return container.status == "running"


def test_retries_across_a_server_restart(fixed_port_server, tmp_path):
    container, url = fixed_port_server
    prompts = _prompts(10)
    restarted = threading.Event()

    def restart_after_two(completion, progress):
        if progress.done == 2 and not restarted.is_set():
            restarted.set()
            container.restart(timeout=0)

    results, _ = generate(url, prompts, Sampling(max_tokens=16), tmp_path / "c.jsonl", "fp",
                          retry=Retry(attempts=30, first_delay_s=0.2, max_delay_s=1.0),
                          on_completion=restart_after_two)
    assert restarted.is_set()
    assert len(results) == 10
    assert any(c.attempts > 1 for c in results.values()), "no request needed a retry"


def test_server_gone_for_good_is_an_infrastructure_error(fixed_port_server, tmp_path):
    container, url = fixed_port_server
    prompts = _prompts(10)

    def kill_after_two(completion, progress):
        if progress.done == 2:
            container.kill()

    started = time.monotonic()
    with pytest.raises(ServerDiedError, match="gone"):
        generate(url, prompts, Sampling(max_tokens=16), tmp_path / "c.jsonl", "fp",
                 retry=Retry(attempts=30, first_delay_s=0.2, max_delay_s=1.0),
                 alive=lambda: _running(container), on_completion=kill_after_two)
    assert time.monotonic() - started < 30
    assert len(CompletionStore(tmp_path / "c.jsonl").load("fp")) >= 2  # nothing lost
