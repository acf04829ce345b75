"""Server faults during generation, injected into a real llama-server run.

* The container restarted mid-run (it comes back on a new host port): followed there.
* The container paused (a hung server) for a few seconds: the run waits and loses nothing;
  paused for good: the health watchdog ends the run as an infrastructure error well before
  the request timeout, and the next run sends only the remaining requests.
* HTTP 500/503, a connection cut, and malformed bodies (JSON cut short, not JSON, JSON
  without choices) for some requests: retried, the answers are those of a clean run.
  llama-server cannot be made to answer these on demand, so :class:`FaultProxy` sits
  between the harness and the real server and replaces some answers; every other answer
  is the real server's, byte for byte. Persistent 500s end the run as an error.
* Through pytest: the container killed mid-run makes the profile's test an error (not a
  failure) with the server log tail, and the next run resumes.

Requests are counted server-side (/metrics ``prompt_tokens_total``, cache_prompt off).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import junit_outcomes, metric, prompt_tokens_total

import docker
from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults, Profile
from plugin.errors import ServerDiedError
from plugin.generation.client import Retry, generate
from plugin.generation.request import Sampling
from plugin.generation.store import CompletionStore
from plugin.server.lifecycle import ServerHandle, llama_server

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("LLAMA_IMAGE", "local/llama.cpp:server")
DATASET = ROOT.parent / "shared/datasets/HumanEvalPlus-v0.1.10.jsonl.gz"
MODELS = ROOT / "build/models"
SAMPLING = Sampling(max_tokens=16)
FAST = Retry(attempts=6, first_delay_s=0.05, max_delay_s=0.2, watch_interval_s=0.5)


def _prompts(n: int) -> dict[str, str]:
    with gzip.open(DATASET, "rt", encoding="utf-8") as fh:
        tasks = [json.loads(line) for _, line in zip(range(n), fh, strict=False)]
    return {t["task_id"]: t["prompt"] for t in tasks}


def _profile(tmp: Path) -> Profile:
    conf = tmp / "models.conf"
    conf.write_text(f"[bench-fault]\nNAME=fault\nMODEL=smoke-tiny.gguf\nMODELS_DIR={MODELS}\n"
                    "CTX_SIZE=2048\nN_GPU_LAYERS=0\nFIT=off\nMAX_TOKENS=16\n"
                    "EXTRA_ARGS=-np 1 -t 1 --metrics\n", encoding="utf-8")
    return load_models_conf(conf, Defaults(cpu_image=IMAGE)).profiles["bench-fault"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerHandle]:
    """A server of its own per test: these tests pause and break it."""
    with llama_server(_profile(tmp_path), log_path=tmp_path / "server.log",
                      run_id=f"faults-{uuid.uuid4().hex[:8]}") as handle:
        yield handle


def settled_prompt_tokens(base_url: str, timeout: float = 60) -> float:
    """prompt_tokens_total once the server has been idle for a second: a request the
    harness gave up on while the server was paused is still queued in its socket and
    gets processed after the unpause."""
    deadline = time.monotonic() + timeout
    last = prompt_tokens_total(base_url)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = prompt_tokens_total(base_url)
        if now == last and metric(base_url, "llamacpp:requests_processing") == 0:
            return now
        last = now
    raise AssertionError(f"{base_url} never went idle")


# --------------------------------------------------------------------------- paused server


def test_a_server_paused_for_a_while_loses_nothing(server: ServerHandle, tmp_path: Path) -> None:
    assert server.client is not None
    api = server.client.api
    prompts = _prompts(10)
    checks: list[bool] = []

    def healthy() -> bool:
        checks.append(server.is_alive(timeout=1.0))
        return checks[-1]

    def pause_at_three(_completion: Any, progress: Any) -> None:
        if progress.done == 3:
            api.pause(server.container_id)
            threading.Timer(6.0, api.unpause, args=(server.container_id,)).start()

    started = time.monotonic()
    results, progress = generate(
        server.base_url, prompts, SAMPLING, tmp_path / "c.jsonl", "fp",
        retry=Retry(hang_timeout_s=60, watch_interval_s=0.5), alive=server.is_running,
        healthy=healthy, on_completion=pause_at_three)
    elapsed = time.monotonic() - started
    assert elapsed >= 6.0, "the pause did not hold the run"
    assert False in checks, "the watchdog never saw the paused server"
    assert progress.reused == 0
    assert len(results) == 10
    assert len(CompletionStore(tmp_path / "c.jsonl").load("fp")) == 10


def test_a_server_paused_for_good_is_an_error_and_the_next_run_resumes(
        server: ServerHandle, tmp_path: Path) -> None:
    assert server.client is not None
    api = server.client.api
    prompts = _prompts(10)
    store = tmp_path / "c.jsonl"
    paused_at: list[float] = []

    def pause_at_three(_completion: Any, progress: Any) -> None:
        if progress.done == 3 and not paused_at:
            api.pause(server.container_id)
            paused_at.append(time.monotonic())

    try:
        with pytest.raises(ServerDiedError, match="stopped answering"):
            generate(server.base_url, prompts, SAMPLING, store, "fp",
                     retry=Retry(hang_timeout_s=3, watch_interval_s=0.5),
                     alive=server.is_running, healthy=lambda: server.is_alive(timeout=1.0),
                     on_completion=pause_at_three)
        detected_after = time.monotonic() - paused_at[0]
    finally:
        api.unpause(server.container_id)
    print(f"paused server detected after {detected_after:.1f} s (hang timeout 3 s)")
    # about 4 s idle; the bound only has to tell the watchdog from the 900 s request timeout
    assert detected_after < 90, "the request timeout (900 s) is not what ended the run"
    kept = CompletionStore(store).load("fp")
    assert len(kept) == 3, "answers received before the hang must be kept"

    before = settled_prompt_tokens(server.base_url)  # the abandoned request may still run
    results, progress = generate(server.base_url, prompts, SAMPLING, store, "fp")
    assert progress.reused == 3
    sent = [results[t] for t in prompts if t not in kept]
    assert prompt_tokens_total(server.base_url) - before == sum(c.prompt_tokens for c in sent)


# --------------------------------------------------------------------------- restarted server


def test_a_restarted_container_is_followed_to_its_new_port(server: ServerHandle,
                                                           tmp_path: Path) -> None:
    """``docker restart`` gives the container a new host port (Docker assigns it again):
    the harness finds it there and the run completes."""
    assert server.client is not None
    container = server.client.containers.get(server.container_id)
    prompts = _prompts(10)
    first_url = server.url

    def restart_at_three(_completion: Any, progress: Any) -> None:
        if progress.done == 3:
            container.restart(timeout=0)

    results, _ = generate(server.base_url, prompts, SAMPLING, tmp_path / "c.jsonl", "fp",
                          retry=Retry(attempts=30, first_delay_s=0.2, max_delay_s=1.0,
                                      watch_interval_s=0.5),
                          alive=server.is_running, healthy=server.is_alive,
                          relocate=server.relocate, on_completion=restart_at_three)
    assert server.url != first_url, "the restarted container kept its port"
    assert len(results) == 10
    assert any(c.attempts > 1 for c in results.values()), "no request needed a retry"
    assert len(CompletionStore(tmp_path / "c.jsonl").load("fp")) == 10
    # the server log follows the container across the restart: both starts are in it
    log = server.log_path
    deadline = time.monotonic() + 60
    while log.read_text().count("listening on") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert text.count("listening on") == 2, text[-3000:]
    assert "[container restarted: its log goes on]" in text


# --------------------------------------------------------------------------- fault proxy


class FaultProxy:
    """HTTP proxy to a real server that replaces some answers of POST /v1/chat/completions.

    ``plan(n)`` (n = 0, 1, ... per completion request) names the fault of request n, or
    None to pass the real answer through. Faults: ``500``, ``503``, ``reset`` (connection
    closed without an answer), ``cut`` (the real answer, cut in half: the server did the
    work), ``html`` (200 with a non-JSON body), ``no_choices`` (200, JSON, no choices).
    """

    def __init__(self, upstream: str, plan: Callable[[int], str | None]) -> None:
        self.upstream = upstream
        self.plan = plan
        self.count = 0
        self.injected: list[str] = []
        self.forwarded = 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # /health, /metrics: passed through
                answer = httpx.get(proxy.upstream + self.path, timeout=30)
                self._send(answer.status_code, answer.content)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy.lock:
                    fault = proxy.plan(proxy.count) if self.path.endswith(
                        "/chat/completions") else None
                    proxy.count += 1
                    if fault:
                        proxy.injected.append(fault)
                if fault in ("500", "503"):
                    return self._send(int(fault), b'{"error": "injected"}')
                if fault == "reset":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return None
                if fault == "html":
                    return self._send(200, b"<html>proxy error</html>")
                if fault == "no_choices":
                    return self._send(200, b'{"object": "chat.completion", "choices": []}')
                answer = httpx.post(proxy.upstream + self.path, content=body, timeout=300,
                                    headers={"Content-Type": "application/json"})
                with proxy.lock:
                    proxy.forwarded += 1
                content = answer.content
                return self._send(answer.status_code,
                                  content[: len(content) // 2] if fault == "cut" else content)

            def _send(self, status: int, content: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self.httpd = _QuietServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up first (the harness gave up, or a retry) is not news."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


FAULTS = ("500", "cut", "503", "html", "reset", "no_choices")


def test_500s_cut_and_malformed_answers_are_retried(server: ServerHandle,
                                                    tmp_path: Path) -> None:
    prompts = _prompts(12)
    clean, _ = generate(server.base_url, prompts, SAMPLING, tmp_path / "clean.jsonl", "fp")

    def plan(n: int) -> str | None:  # every other request, each fault twice
        return FAULTS[(n // 2) % len(FAULTS)] if n % 2 == 0 and n < 24 else None

    store = tmp_path / "c.jsonl"
    before = prompt_tokens_total(server.base_url)
    with FaultProxy(server.base_url, plan) as proxy:
        results, _ = generate(proxy.url, prompts, SAMPLING, store, "fp", retry=FAST)
    assert sorted(proxy.injected) == sorted(FAULTS * 2), proxy.injected
    assert sum(c.attempts - 1 for c in results.values()) == len(proxy.injected)
    assert {t: c.content for t, c in results.items()} == \
        {t: c.content for t, c in clean.items()}, "a retried answer differs from a clean run"
    lines = store.read_text().splitlines()
    assert len(lines) == 12, "a faulty answer was stored"
    # the server saw exactly the forwarded requests (12 answered + the 2 cut in half)
    assert proxy.forwarded == 14
    per_task = {t: c.prompt_tokens for t, c in results.items()}
    seen = prompt_tokens_total(server.base_url) - before
    assert sum(per_task.values()) < seen <= sum(per_task.values()) + 2 * max(per_task.values())


def test_persistent_500s_are_an_infrastructure_error_and_the_next_run_resumes(
        server: ServerHandle, tmp_path: Path) -> None:
    prompts = _prompts(8)
    store = tmp_path / "c.jsonl"
    with FaultProxy(server.base_url, lambda n: "500" if n >= 3 else None) as proxy, \
            pytest.raises(ServerDiedError, match=r"failed 6 times; last error: HTTP 500"):
        generate(proxy.url, prompts, SAMPLING, store, "fp", retry=FAST)
    assert len(CompletionStore(store).load("fp")) == 3
    _, progress = generate(server.base_url, prompts, SAMPLING, store, "fp")
    assert progress.reused == 3
    assert progress.done == 8


# --------------------------------------------------------------------------- through pytest


def test_a_server_killed_mid_run_errors_the_profile_and_the_next_run_resumes(
        tmp_path: Path) -> None:
    """The real bench_tests: the container is killed after a few answers. The test is an
    error carrying the log tail, not a failure; the re-run asks only what is missing."""
    conf = tmp_path / "models.conf"
    conf.write_text(f"[bench-smoke]\nNAME=smoke\nMODEL=smoke-tiny.gguf\nMODELS_DIR={MODELS}\n"
                    f"CPU_IMAGE={IMAGE}\nCTX_SIZE=2048\nN_GPU_LAYERS=0\nFIT=off\n"
                    "MAX_TOKENS=96\nQUANT=F32\nEXTRA_ARGS=-np 1 -t 1\n", encoding="utf-8")
    reports = tmp_path / "reports"
    run_id = f"kill-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "PYTEST_"))}
    env["BENCH_RUN_ID"] = run_id
    limit = 40

    def command(junit: Path) -> list[str]:
        return [sys.executable, "-m", "pytest", "bench_tests", "-k", "humaneval_plus",
                "-p", "no:randomly", "--bench-config", str(conf), "--bench-limit", str(limit),
                "--bench-reports-dir", str(reports), f"--junitxml={junit}", "-o", "addopts=",
                "--html", str(tmp_path / "report.html")]

    store = reports / "bench-smoke" / "humaneval" / "completions.jsonl"
    proc = subprocess.Popen(command(tmp_path / "first.xml"), cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = docker.from_env()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if store.exists() and len(store.read_text().splitlines()) >= 5:
                break
            time.sleep(0.05)
        victims = client.containers.list(filters={"label": f"bench.run_id={run_id}"})
        assert len(victims) == 1, "the profile's server is not running"
        victims[0].kill()
        output = proc.communicate(timeout=300)[0]
    finally:
        client.close()
        if proc.poll() is None:
            proc.kill()
    kept = len(store.read_text().splitlines())
    assert 5 <= kept < limit, output
    kind, message = junit_outcomes(tmp_path / "first.xml")["test_humaneval_plus[bench-smoke]"]
    assert kind == "error", output
    assert "llama-server is gone" in message
    assert "server log tail" in message
    assert proc.returncode == 1, output

    done = subprocess.run(command(tmp_path / "second.xml"), cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=300, check=False)
    assert junit_outcomes(tmp_path / "second.xml")["test_humaneval_plus[bench-smoke]"][0] == \
        "passed", done.stdout + done.stderr
    summary = json.loads((store.parent / "summary.json").read_text())
    assert summary["requests_sent"] == limit - kept
    assert summary["n_tasks"] == limit
