"""plugin.server without a Docker engine: the container spec of every models.conf profile,
model file checks, labels, log tails, the cleanup registry and the SIGTERM hook.

The spec tests pin exactly what reaches ``containers.run`` (image, command, GPU device
requests, mounts, environment, ports, labels, name) and how the Docker SDK converts it
into the Engine API request (``_create_container_args``), the last step before the daemon.
GPU profiles cannot start here (no GPU); this is as far as their path is tested.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from docker.models.containers import _create_container_args
from docker.types import DeviceRequest, Mount

from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults, Profile
from plugin.containers import registry
from plugin.containers.client import remote_hostname
from plugin.containers.labels import LABEL_OWNER_HOST, LABEL_OWNER_PID
from plugin.containers.owner import owner_gone
from plugin.containers.registry import (
    _sigterm_handler,
    cleanup_all,
    register_cleanup,
    registered_containers,
    unregister_cleanup,
)
from plugin.errors import ModelFileMissingError
from plugin.server.health import normalize_base_url, published_base_url
from plugin.server.lifecycle import llama_server
from plugin.server.logs import read_log_tail
from plugin.server.spec import (
    build_container_spec,
    check_model_files,
    container_name,
    engine_host,
    model_files,
)

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "models.conf"
RUN_ID = "0123456789abcdef"

GPU_IMAGE = "ghcr.io/ggml-org/llama.cpp:server-cuda"
CPU_IMAGE = "ghcr.io/ggml-org/llama.cpp:server"
SRV = Path("/srv/models")
ALL_GPUS = (DeviceRequest(count=-1, capabilities=[["gpu"]]),)
GPU_0_1 = (DeviceRequest(device_ids=["0", "1"], capabilities=[["gpu"]]),)

GLM_PROD = ("--jinja", "-np", "1", "--temp", "1.0", "--top-p", "0.95", "--min-p", "0.01")
QWEN_PROD = ("--jinja", "-np", "1", "--temp", "1.0", "--top-p", "0.95", "--top-k", "40",
             "--min-p", "0.01", "-b", "2048", "-ub", "2048", "--no-context-shift")
QWEN_BENCH = ("--jinja", "-np", "1", "-b", "2048", "-ub", "2048", "--no-context-shift")
OSS_OT = r"blk\.([0-9]|1[0-1])\.=CUDA0,blk\.(1[2-9]|2[0-3])\.=CUDA1,exps=CPU"
QWEN_Q5_OT = r"blk\.([0-9]|1[0-3])\.=CUDA0,blk\.(1[4-9])\.=CUDA1,exps=CPU"
QWEN_Q6_OT = r"blk\.([0-9]|1[0-2])\.=CUDA0,blk\.(1[3-8])\.=CUDA1,exps=CPU"
QWEN_Q6K_OT = r"blk\.([0-9]|1[0-1])\.=CUDA0,blk\.(1[2-7])\.=CUDA1,exps=CPU"

GLM_Q4 = "GLM-4.7-Flash/GLM-4.7-Flash-UD-Q4_K_XL.gguf"
GLM_Q8 = "GLM-4.7-Flash/GLM-4.7-Flash-Q8_0.gguf"
OSS = "gpt-oss-120b/gpt-oss-120b-mxfp4-00001-of-00003.gguf"
QWEN_Q5 = "Qwen3-Coder-Next/UD-Q5_K_XL/Qwen3-Coder-Next-UD-Q5_K_XL-00001-of-00003.gguf"
QWEN_Q6 = "Qwen3-Coder-Next/UD-Q6_K_XL/Qwen3-Coder-Next-UD-Q6_K_XL-00001-of-00003.gguf"
QWEN_Q6K = "Qwen3-Coder-Next/Q6_K/Qwen3-Coder-Next-Q6_K-00001-of-00003.gguf"

# profile -> (image, mount source, model under /models, -c, -ngl, arguments after --port,
#             device requests)
EXPECTED: dict[str, tuple[str, Path, str, int, str, tuple[str, ...], tuple[DeviceRequest, ...]]]
EXPECTED = {
    "glm-flash-q4": (GPU_IMAGE, SRV, GLM_Q4, 131072, "99", GLM_PROD, ALL_GPUS),
    "glm-flash": (GPU_IMAGE, SRV, GLM_Q8, 131072, "99", GLM_PROD, ALL_GPUS),
    "glm-flash-exp": (GPU_IMAGE, SRV, GLM_Q8, 202752, "99", ("--jinja", "-np", "1"), ALL_GPUS),
    "gpt-oss-120b": (GPU_IMAGE, SRV, OSS, 131072, "99",
                     ("--jinja", "-np", "1", "--temp", "1.0", "--top-p", "1.0",
                      "-b", "4096", "-ub", "4096", "-ot", OSS_OT), GPU_0_1),
    "qwen3-coder-q5": (GPU_IMAGE, SRV, QWEN_Q5, 262144, "99", (*QWEN_PROD, "-ot", QWEN_Q5_OT),
                       GPU_0_1),
    "qwen3-coder": (GPU_IMAGE, SRV, QWEN_Q6, 131072, "99", (*QWEN_PROD, "-ot", QWEN_Q6_OT),
                    GPU_0_1),
    "qwen3-coder-q6k": (GPU_IMAGE, SRV, QWEN_Q6K, 65536, "99",
                        (*QWEN_PROD, "-ot", QWEN_Q6K_OT), GPU_0_1),
    "bench-glm-flash-q4": (GPU_IMAGE, SRV, GLM_Q4, 16384, "99", ("--jinja", "-np", "1"),
                           ALL_GPUS),
    "bench-glm-flash": (GPU_IMAGE, SRV, GLM_Q8, 16384, "99", ("--jinja", "-np", "1"), ALL_GPUS),
    "bench-gpt-oss-120b": (GPU_IMAGE, SRV, OSS, 16384, "99",
                           ("--jinja", "-np", "1", "-b", "4096", "-ub", "4096", "-ot", OSS_OT),
                           GPU_0_1),
    "bench-qwen3-coder-q5": (GPU_IMAGE, SRV, QWEN_Q5, 16384, "99",
                             (*QWEN_BENCH, "-ot", QWEN_Q5_OT), GPU_0_1),
    "bench-qwen3-coder": (GPU_IMAGE, SRV, QWEN_Q6, 16384, "99", (*QWEN_BENCH, "-ot", QWEN_Q6_OT),
                          GPU_0_1),
    "bench-qwen3-coder-q6k": (GPU_IMAGE, SRV, QWEN_Q6K, 16384, "99",
                              (*QWEN_BENCH, "-ot", QWEN_Q6K_OT), GPU_0_1),
    "bench-smoke": (CPU_IMAGE, ROOT / "build" / "models", "smoke-tiny.gguf", 2048, "0",
                    ("-np", "1", "-t", "1"), ()),
    "bench-gemma3-270m": (CPU_IMAGE, ROOT / "build" / "models", "gemma-3-270m-q4_k_m.gguf",
                          4096, "0", ("-np", "1", "-t", "2"), ()),
    "bench-canary": (CPU_IMAGE, ROOT / "models" / "canary", "canary-humaneval.gguf",
                     4096, "0", ("--jinja", "-np", "1", "-t", "1"), ()),
    "bench-canary-think": (CPU_IMAGE, ROOT / "models" / "canary", "canary-humaneval.gguf",
                           4096, "0",
                           ("--jinja", "--chat-template-file", "/models/canary-think.jinja",
                            "-np", "1", "-t", "1", "--reasoning-format", "deepseek"), ()),
}


@pytest.fixture(scope="module")
def profiles() -> dict[str, Profile]:
    return dict(load_models_conf(CONF, Defaults()).profiles)


@pytest.fixture(autouse=True)
def _local_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DOCKER_HOST=tcp://... of the machine running the tests would change the ports."""
    monkeypatch.delenv("DOCKER_HOST", raising=False)


def conf_profile(tmp_path: Path, body: str, name: str = "bench-x") -> Profile:
    path = tmp_path / "models.conf"
    path.write_text(f"[{name}]\nNAME=x\nCTX_SIZE=512\n{body}", encoding="utf-8")
    return load_models_conf(path).profiles[name]


def expected_labels(profile: str) -> dict[str, str]:
    return {
        "bench.harness": "llama-bench", "bench.run_id": RUN_ID, "bench.profile": profile,
        "bench.owner_pid": str(os.getpid()), "bench.owner_host": socket.gethostname(),
        "bench.role": "server",
    }


# --------------------------------------------------------------------------- every profile


def test_every_models_conf_profile_is_pinned(profiles: dict[str, Profile]) -> None:
    assert sorted(profiles) == sorted(EXPECTED), "add the new profile to EXPECTED"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_spec_of_models_conf_profile(profiles: dict[str, Profile], name: str) -> None:
    image, source, model, ctx, ngl, extra, gpus = EXPECTED[name]
    spec = build_container_spec(profiles[name], run_id=RUN_ID)

    assert spec.image == image
    assert spec.command == ("-m", f"/models/{model}", "-c", str(ctx), "-ngl", ngl,
                            "-fit", "off", "--host", "0.0.0.0", "--port", "8080", *extra)
    assert spec.device_requests == gpus
    assert spec.mounts == (Mount(target="/models", source=os.path.normpath(source),
                                 type="bind", read_only=True),)
    assert dict(spec.environment) == {}
    assert dict(spec.ports) == {"8080/tcp": ("127.0.0.1", None)}
    assert dict(spec.labels) == expected_labels(name)
    assert spec.name == f"llama-bench-{name}-{RUN_ID}"


def test_ot_regex_reaches_command_byte_for_byte(profiles: dict[str, Profile]) -> None:
    command = build_container_spec(profiles["bench-qwen3-coder"], run_id=RUN_ID).command
    ot = command[command.index("-ot") + 1]
    assert ot.encode() == rb"blk\.([0-9]|1[0-2])\.=CUDA0,blk\.(1[3-8])\.=CUDA1,exps=CPU"


@pytest.mark.parametrize(("name", "device_requests"), [
    ("bench-qwen3-coder", [{"Driver": "", "Count": 0, "DeviceIDs": ["0", "1"],
                            "Capabilities": [["gpu"]], "Options": {}}]),
    ("bench-glm-flash", [{"Driver": "", "Count": -1, "DeviceIDs": [],
                          "Capabilities": [["gpu"]], "Options": {}}]),
    ("bench-canary", None),
])
def test_docker_sdk_turns_spec_into_engine_request(
        profiles: dict[str, Profile], name: str, device_requests: Any) -> None:
    spec = build_container_spec(profiles[name], run_id=RUN_ID)
    kwargs = spec.run_kwargs()
    create = _create_container_args({**kwargs, "version": "1.41"})
    host_config = create["host_config"]

    assert create["image"] == spec.image
    assert create["command"] == list(spec.command)
    assert create["labels"] == dict(spec.labels)
    assert create["name"] == spec.name
    assert host_config.get("DeviceRequests") == device_requests
    assert host_config["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    assert host_config["Mounts"] == [{"Target": "/models", "Source": spec.mounts[0]["Source"],
                                      "Type": "bind", "ReadOnly": True}]
    assert kwargs["detach"] is True


# --------------------------------------------------------------------------- variants


@pytest.mark.parametrize(("body", "expected"), [
    ("N_GPU_LAYERS=99\nGPUS=all\nEXTRA_ARGS=-ot exps=CUDA1\n", ALL_GPUS),
    ("N_GPU_LAYERS=99\nGPUS=none\n", ()),
    ("N_GPU_LAYERS=99\nGPUS=0,1\n", GPU_0_1),
    ("N_GPU_LAYERS=99\nGPUS=2\n", (DeviceRequest(device_ids=["2"], capabilities=[["gpu"]]),)),
    ("N_GPU_LAYERS=0\n", ()),
])
def test_gpus_key_selects_device_requests(tmp_path: Path, body: str,
                                          expected: tuple[DeviceRequest, ...]) -> None:
    profile = conf_profile(tmp_path, f"MODEL=m.gguf\n{body}")
    assert build_container_spec(profile, run_id=RUN_ID).device_requests == expected


def test_no_fit_flag_when_fit_unset(tmp_path: Path) -> None:
    profile = conf_profile(tmp_path, "MODEL=m.gguf\nMODELS_DIR=/m\nEXTRA_ARGS=--jinja\n")
    assert build_container_spec(profile, run_id=RUN_ID).command == (
        "-m", "/models/m.gguf", "-c", "512", "-ngl", "0", "--host", "0.0.0.0",
        "--port", "8080", "--jinja")


@pytest.mark.parametrize(("model", "source", "in_container"), [
    ("sub/dir/m.gguf", "/data/models", "/models/sub/dir/m.gguf"),
    ("/elsewhere/q/m-00001-of-00002.gguf", "/elsewhere/q", "/models/m-00001-of-00002.gguf"),
    ("../other/m.gguf", "/data/other", "/models/m.gguf"),
])
def test_mount_keeps_model_subpath_or_mounts_its_folder(
        tmp_path: Path, model: str, source: str, in_container: str) -> None:
    profile = conf_profile(tmp_path, f"MODEL={model}\nMODELS_DIR=/data/models\n")
    spec = build_container_spec(profile, run_id=RUN_ID)
    assert spec.mounts[0]["Source"] == source
    assert spec.mounts[0]["ReadOnly"] is True
    assert spec.command[:2] == ("-m", in_container)


def test_remote_engine_publishes_on_all_interfaces(tmp_path: Path) -> None:
    profile = conf_profile(tmp_path, "MODEL=m.gguf\nDOCKER_HOST=tcp://gpu-box:2375\n")
    spec = build_container_spec(profile, run_id=RUN_ID)
    assert dict(spec.ports) == {"8080/tcp": ("0.0.0.0", None)}
    assert remote_hostname("ssh://me@gpu-box") == "gpu-box"
    assert remote_hostname("unix:///var/run/docker.sock") is None
    assert remote_hostname(None) is None


def test_docker_host_environment_variable_counts_as_the_engine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profile = conf_profile(tmp_path, "MODEL=m.gguf\n")
    monkeypatch.setenv("DOCKER_HOST", "tcp://ci-docker:2375")
    assert engine_host(profile) == "tcp://ci-docker:2375"
    spec = build_container_spec(profile, run_id=RUN_ID)
    assert dict(spec.ports) == {"8080/tcp": ("0.0.0.0", None)}
    info = {"NetworkSettings": {"Ports": {"8080/tcp": [{"HostIp": "0.0.0.0",
                                                         "HostPort": "32770"}]}}}
    assert published_base_url(profile, info) == "http://ci-docker:32770"
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/user/1000/docker.sock")
    assert published_base_url(profile, info) == "http://127.0.0.1:32770"


def test_docker_host_option_replaces_default_but_not_a_profiles_own(tmp_path: Path) -> None:
    path = tmp_path / "models.conf"
    path.write_text("[DEFAULT]\nDOCKER_HOST=tcp://conf-default:2375\nNAME=x\nCTX_SIZE=512\n"
                    "MODEL=m.gguf\n\n[bench-a]\n\n[bench-b]\nDOCKER_HOST=ssh://own-box\n")
    plain = load_models_conf(path).profiles
    assert plain["bench-a"].docker_host == "tcp://conf-default:2375"
    assert plain["bench-b"].docker_host == "ssh://own-box"
    opted = load_models_conf(path, Defaults(docker_host="tcp://option:2375")).profiles
    assert opted["bench-a"].docker_host == "tcp://option:2375"
    assert opted["bench-b"].docker_host == "ssh://own-box"


def test_base_url_option_replaces_every_profiles(tmp_path: Path) -> None:
    path = tmp_path / "models.conf"
    path.write_text("[bench-a]\nNAME=x\nCTX_SIZE=512\nMODEL=m.gguf\n\n"
                    "[bench-b]\nNAME=x\nCTX_SIZE=512\nMODEL=m.gguf\nBASE_URL=http://own:1\n")
    opted = load_models_conf(path, Defaults(base_url="http://option:8080")).profiles
    assert {p.base_url for p in opted.values()} == {"http://option:8080"}
    assert load_models_conf(path).profiles["bench-a"].base_url is None


def test_custom_container_port(tmp_path: Path) -> None:
    profile = conf_profile(tmp_path, "MODEL=m.gguf\n")
    spec = build_container_spec(profile, run_id=RUN_ID, container_port=9000)
    assert spec.command[spec.command.index("--port") + 1] == "9000"
    assert dict(spec.ports) == {"9000/tcp": ("127.0.0.1", None)}


def test_container_name_is_docker_safe(profiles: dict[str, Profile]) -> None:
    profile = profiles["bench-smoke"]
    expected = "llama-bench-bench-smoke-ab_c_d_e-long"
    assert container_name(profile, "ab/c:d e-long") == expected


# --------------------------------------------------------------------------- model files


class NoDocker:
    """A client that fails the test if anything touches Docker."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"Docker was touched ({name}) before the model file check")


def test_missing_model_names_path_option_and_conf_line(tmp_path: Path) -> None:
    conf = tmp_path / "models.conf"
    conf.write_text("[bench-gone]\nNAME=x\nCTX_SIZE=512\n# comment\nMODEL=sub/gone.gguf\n"
                    f"MODELS_DIR={tmp_path}\n", encoding="utf-8")
    profile = load_models_conf(conf).profiles["bench-gone"]
    with pytest.raises(ModelFileMissingError) as info, llama_server(
            profile, log_path=tmp_path / "log", run_id=RUN_ID, client=NoDocker()):
        pytest.fail("must not start")
    assert str(info.value) == (
        f"model file not found: {tmp_path}/sub/gone.gguf (set --bench-models-dir / "
        f"BENCH_MODELS_DIR, or edit MODEL at {conf}:5)")


def test_missing_shard_is_named(tmp_path: Path) -> None:
    (tmp_path / "m-00001-of-00003.gguf").touch()
    (tmp_path / "m-00003-of-00003.gguf").touch()
    profile = conf_profile(tmp_path, f"MODEL=m-00001-of-00003.gguf\nMODELS_DIR={tmp_path}\n")
    with pytest.raises(ModelFileMissingError, match=r"1 of 3 shards missing") as info:
        check_model_files(profile)
    assert f"{tmp_path}/m-00002-of-00003.gguf" in str(info.value)
    assert "models.conf:4" in str(info.value)


def test_model_files_lists_every_shard(tmp_path: Path) -> None:
    profile = conf_profile(tmp_path, "MODEL=a/m-00001-of-00002.gguf\nMODELS_DIR=/d\n")
    assert model_files(profile) == [Path("/d/a/m-00001-of-00002.gguf"),
                                           Path("/d/a/m-00002-of-00002.gguf")]


def test_base_url_and_remote_profiles_skip_the_local_file_check(tmp_path: Path) -> None:
    check_model_files(conf_profile(tmp_path, "MODEL=no.gguf\nBASE_URL=http://h:1\n"))
    check_model_files(conf_profile(tmp_path, "MODEL=no.gguf\nDOCKER_HOST=ssh://h\n"))


# --------------------------------------------------------------------------- small helpers


@pytest.mark.parametrize(("url", "root"), [
    ("http://h:8080", "http://h:8080"), ("http://h:8080/", "http://h:8080"),
    ("http://h:8080/v1", "http://h:8080"), ("http://h:8080/v1/", "http://h:8080"),
])
def test_normalize_base_url(url: str, root: str) -> None:
    assert normalize_base_url(url) == root


def test_read_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    assert read_log_tail(log) == ""
    log.write_text("".join(f"line {i}\n" for i in range(100)), encoding="utf-8")
    assert read_log_tail(log, 3) == "line 97\nline 98\nline 99"
    assert read_log_tail(log).splitlines()[0] == "line 60"


def test_owner_gone() -> None:
    here = {LABEL_OWNER_HOST: socket.gethostname()}
    assert not owner_gone({**here, LABEL_OWNER_PID: str(os.getpid())})
    assert owner_gone({**here, LABEL_OWNER_PID: str(_pid_of_finished_process())})
    assert owner_gone(here)
    assert owner_gone({**here, LABEL_OWNER_PID: "not-a-pid"})
    assert owner_gone({**here, LABEL_OWNER_PID: "0"})
    # another host's pids are not ours to judge
    assert not owner_gone({LABEL_OWNER_HOST: "elsewhere",
                           LABEL_OWNER_PID: str(_pid_of_finished_process())})
    # sandboxes of earlier versions: only bench.pid, always local
    assert owner_gone({"bench.pid": str(_pid_of_finished_process())})
    assert not owner_gone({"bench.pid": str(os.getpid())})


def _pid_of_finished_process() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------- registry, SIGTERM


class FakeApi:
    def __init__(self) -> None:
        self.removed: list[str] = []

    def stop(self, container_id: str, timeout: int) -> None:
        raise AssertionError("cleanup must not wait for a graceful stop")

    def remove_container(self, container_id: str, force: bool) -> None:
        assert force
        self.removed.append(container_id)


class FakeClient:
    def __init__(self) -> None:
        self.api = FakeApi()


@pytest.fixture
def no_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the real atexit/SIGTERM hooks out of unit tests."""
    monkeypatch.setattr(registry, "_hooks", {"atexit": True, "sigterm": True})


@pytest.mark.usefixtures("no_hooks")
def test_cleanup_all_removes_registered_containers_once() -> None:
    client = FakeClient()
    register_cleanup(client, "id-1", "one")
    register_cleanup(client, "id-2", "two")
    assert registered_containers() == {"id-1": "one", "id-2": "two"}
    assert cleanup_all() == ["one", "two"]
    assert client.api.removed == ["id-1", "id-2"]
    assert cleanup_all() == []
    assert registered_containers() == {}


@pytest.mark.usefixtures("no_hooks")
def test_public_registration_for_containers_started_elsewhere() -> None:
    client = FakeClient()
    register_cleanup(client, "sandbox-1", "sandbox")
    register_cleanup(client, "sandbox-2", "sandbox-b")
    unregister_cleanup("sandbox-1")  # removed by its owner: nothing to do at exit
    assert cleanup_all() == ["sandbox-b"]
    assert client.api.removed == ["sandbox-2"]


@pytest.mark.usefixtures("no_hooks")
def test_sigterm_handler_cleans_up_then_chains_previous_handler() -> None:
    client = FakeClient()
    register_cleanup(client, "id-1", "one")
    calls: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    _sigterm_handler(previous)(signal.SIGTERM, None)
    assert client.api.removed == ["id-1"]
    assert calls == [signal.SIGTERM]


def test_sigterm_without_previous_handler_still_terminates() -> None:
    code = ("import signal, time; from plugin.containers import registry; "
            "registry._install_exit_hooks(); "
            "signal.raise_signal(signal.SIGTERM); time.sleep(5); print('survived')")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    assert "survived" not in proc.stdout


def test_profile_replace_keeps_spec_pure(profiles: dict[str, Profile]) -> None:
    """build_container_spec reads only the profile (no file system, no Docker)."""
    profile = replace(profiles["bench-canary"], models_dir=Path("/nowhere"))
    assert build_container_spec(profile, run_id=RUN_ID).mounts[0]["Source"] == "/nowhere"
