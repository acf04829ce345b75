"""An API key for llama-server (``--api-key``), end to end, never written anywhere.

The profile names an environment variable (API_KEY_ENV); the key is copied into the
created container as a file that llama-server reads with ``--api-key-file`` (so
``docker inspect`` shows it nowhere), every request of the harness sends it, and
no file the run writes (server log, completions, verdicts, summaries, HTML/Markdown/JUnit
reports, the history database) nor the terminal output contains it: the test greps them.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults
from plugin.errors import ConfigError
from plugin.server.lifecycle import llama_server
from plugin.server.spec import API_KEY_FILE, build_container_spec

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("LLAMA_IMAGE", "local/llama.cpp:server")
MODELS = ROOT / "build/models"
VARIABLE = "LLAMA_BENCH_TEST_API_KEY"


def _conf(tmp: Path, extra: str = "") -> Path:
    conf = tmp / "models.conf"
    conf.write_text(f"[DEFAULT]\nAPI_KEY_ENV={VARIABLE}\n\n"
                    f"[bench-smoke]\nNAME=smoke\nMODEL=smoke-tiny.gguf\nMODELS_DIR={MODELS}\n"
                    f"CPU_IMAGE={IMAGE}\nCTX_SIZE=2048\nN_GPU_LAYERS=0\nFIT=off\n"
                    f"MAX_TOKENS=32\nQUANT=F32\nEXTRA_ARGS=-np 1 -t 1 --metrics{extra}\n",
                    encoding="utf-8")
    return conf


def test_the_key_goes_to_a_file_not_the_environment_or_the_command_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-" + secrets.token_hex(16)
    monkeypatch.setenv(VARIABLE, key)
    profile = load_models_conf(_conf(tmp_path)).profiles["bench-smoke"]
    assert profile.api_key_env == VARIABLE
    spec = build_container_spec(profile, run_id="r")
    assert spec.environment == {}
    assert spec.files == {API_KEY_FILE: f"{key}\n".encode()}
    assert spec.command[spec.command.index("--api-key-file") + 1] == API_KEY_FILE
    assert key not in " ".join(spec.command)
    assert key not in json.dumps(spec.run_kwargs(), default=str)
    assert key not in repr(spec)
    assert key not in repr(profile)


def test_an_unset_key_variable_names_the_line_and_the_fix(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.delenv(VARIABLE, raising=False)
    conf = _conf(tmp_path)
    profile = load_models_conf(conf).profiles["bench-smoke"]
    with pytest.raises(ConfigError) as info:
        build_container_spec(profile, run_id="r")
    assert f"{conf}:2:" in str(info.value)
    assert f"export {VARIABLE}=" in str(info.value)


@pytest.mark.parametrize("flag", ["--api-key sk-written-down", "--api-key-file /keys"])
def test_a_key_in_extra_args_is_refused(tmp_path: Path, flag: str) -> None:
    conf = _conf(tmp_path, extra=" " + flag)
    with pytest.raises(ConfigError, match="API_KEY_ENV") as info:
        load_models_conf(conf)
    assert f"{conf}:" in str(info.value)


def test_a_variable_name_is_required_not_a_key(tmp_path: Path) -> None:
    conf = tmp_path / "models.conf"
    conf.write_text("[bench-x]\nNAME=x\nMODEL=x.gguf\nCTX_SIZE=512\nAPI_KEY_ENV=sk-12 34\n")
    with pytest.raises(ConfigError, match=r"models.conf:5: .*not an environment variable"):
        load_models_conf(conf)


@pytest.mark.docker
def test_the_server_enforces_the_key_and_the_harness_sends_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-" + secrets.token_hex(16)
    monkeypatch.setenv(VARIABLE, key)
    profile = load_models_conf(_conf(tmp_path), Defaults(cpu_image=IMAGE)).profiles[
        "bench-smoke"]
    log = tmp_path / "server.log"
    with llama_server(profile, log_path=log, run_id=f"key-{uuid.uuid4().hex[:8]}") as handle:
        url = f"{handle.base_url}/v1/chat/completions"
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
        assert httpx.post(url, json=body, timeout=60).status_code == 401
        assert httpx.post(url, json=body, timeout=60, headers={
            "Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.post(url, json=body, timeout=60, headers=handle.headers).status_code == 200
        assert handle.props.get("build_info"), "/props was read with the key"
        assert handle.is_alive()
        assert handle.is_running()
        assert key not in repr(handle)
        # nothing docker inspect shows holds the key: not the environment, the command,
        # the labels, the mounts
        inspected = handle.client.api.inspect_container(handle.container_id)
        assert key not in json.dumps(inspected)
        assert f"--api-key-file {API_KEY_FILE}" in " ".join(inspected["Args"])
    assert key not in log.read_text(errors="replace")


@pytest.mark.docker
def test_a_benchmark_with_a_key_writes_it_nowhere(tmp_path: Path) -> None:
    """The real bench_tests, sandbox, reports and history; then grep everything."""
    key = "sk-" + secrets.token_hex(16)
    conf = _conf(tmp_path)
    reports = tmp_path / "reports"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BENCH_", "PYTEST_"))}
    env.update({VARIABLE: key, "BENCH_RUN_ID": f"key-{uuid.uuid4().hex[:8]}"})
    html = tmp_path / "report.html"
    junit = tmp_path / "junit.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "bench_tests", "-k", "humaneval_plus", "-p",
         "no:randomly", "--bench-config", str(conf), "--bench-limit", "4", "-rA",
         "--bench-reports-dir", str(reports), f"--junitxml={junit}", "-o", "addopts=",
         "--html", str(html), "--self-contained-html", "-o", "log_level=DEBUG",
         "--log-file", str(tmp_path / "pytest.log"), "--log-file-level", "DEBUG"],
        cwd=ROOT, env=env, text=True, capture_output=True, timeout=300, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    summary = json.loads((reports / "bench-smoke" / "humaneval" / "summary.json").read_text())
    assert summary["requests_sent"] == 4  # answered: the key was sent and accepted
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"server.log", "completions.jsonl", "summary.json", "report.html", "junit.xml",
            "pytest.log"} <= names, sorted(names)
    assert any(p.suffix == ".sqlite" for p in files), sorted(names)
    leaks = [str(p) for p in files if key.encode() in p.read_bytes()]
    assert leaks == []
    assert key not in output
    # and the run without the variable: an error naming models.conf's line and the fix
    env.pop(VARIABLE)
    refused = subprocess.run(
        [sys.executable, "-m", "pytest", "bench_tests", "-k", "humaneval_plus", "-p",
         "no:randomly", "--bench-config", str(conf), "--bench-limit", "4",
         "--bench-reports-dir", str(tmp_path / "reports2"), "-o", "addopts="],
        cwd=ROOT, env=env, text=True, capture_output=True, timeout=300, check=False)
    assert refused.returncode == 1, refused.stdout
    assert f"{conf}:2: profile [bench-smoke]: API_KEY_ENV={VARIABLE}" in refused.stdout
    assert f"export {VARIABLE}=" in refused.stdout


def test_the_log_pump_redacts_a_key_cut_across_chunks(tmp_path: Path) -> None:
    """llama-server itself prints only a masked key (``api_keys: ****e123``), so a stand-in
    container feeds the pump a log line with the key split over two chunks, as a stream
    read can cut it."""
    from plugin.server.logs import LogPump

    key = "sk-" + secrets.token_hex(16)

    class Stream:
        name = "stand-in"

        def logs(self, **_: object) -> list[bytes]:
            line = f"request with Authorization: Bearer {key}\n".encode()
            return [b"start\n" + line[:30], line[30:] + b"tail without newline " +
                    key.encode()]

    log = tmp_path / "server.log"
    pump = LogPump(Stream(), log, secrets=[key])
    pump.run()
    text = log.read_text()
    assert key not in text
    assert text.count("***") == 2
    assert text.startswith("start\nrequest with Authorization: Bearer ***\n")
