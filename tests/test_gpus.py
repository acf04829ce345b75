"""GPU preflight (plugin.server.gpus): a GPU profile fails in seconds, before its server
container exists, naming the profile, the GPUs it asks for, what the engine has and the fix.

There is no GPU here. The decision (:func:`plugin.server.gpus.judge`) is tested against this
machine's real engine (no NVIDIA runtime: it really refuses a container that asks for a
GPU) and against the recorded answers of a two-GPU engine in
``tests/data/engine-two-gpus.json`` (see its "about": written from the API schema, not
captured on a GPU host).
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker.client import DockerClient

from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Profile
from plugin.containers.client import docker_client
from plugin.errors import GpuUnavailableError
from plugin.server import gpus
from plugin.server.lifecycle import llama_server

ROOT = Path(__file__).resolve().parents[1]
TWO_GPUS = json.loads((ROOT / "tests" / "data" / "engine-two-gpus.json").read_text())
SPLIT = r"blk\.([0-9]|1[0-1])\.=CUDA0,blk\.(1[2-9]|2[0-3])\.=CUDA1,exps=CPU"


def gpu_profile(tmp_path: Path, body: str, models_dir: Path | None = None) -> Profile:
    path = tmp_path / "models.conf"
    path.write_text(
        "[DEFAULT]\nIMAGE=local/llama.cpp:server\n"
        f"MODELS_DIR={models_dir or ROOT / 'models' / 'canary'}\n\n"
        "[bench-gpu]\nNAME=GPU profile\nMODEL=canary-humaneval.gguf\nCTX_SIZE=512\n"
        f"N_GPU_LAYERS=99\n{body}", encoding="utf-8")
    return load_models_conf(path).profiles["bench-gpu"]


def two_gpu_engine() -> gpus.Engine:
    return gpus.Engine.from_info(TWO_GPUS["info"], "unix:///var/run/docker.sock")


# --------------------------------------------------------------------------- recorded answers


def test_the_recorded_two_gpu_engine_is_read_as_such() -> None:
    engine = two_gpu_engine()
    assert engine.nvidia_runtime
    assert engine.cdi_indices == ("0", "1")
    assert gpus.Probe.from_listing(TWO_GPUS["probe_all_gpus"]).gpus == ("0", "1")
    assert gpus.Probe.from_listing(TWO_GPUS["probe_gpu_1"]).gpus == ("1",)


@pytest.mark.parametrize("body", [
    f"EXTRA_ARGS=-ot {SPLIT}\n",  # GPUS from the split: 0,1
    f"GPUS=all\nEXTRA_ARGS=-ot {SPLIT}\n",
    "GPUS=0,1\n",
    "GPUS=1\nEXTRA_ARGS=-ot exps=CUDA0\n",  # GPU 1 is CUDA0 inside the container
])
def test_a_two_gpu_engine_serves_profiles_within_its_gpus(tmp_path: Path, body: str) -> None:
    profile = gpu_profile(tmp_path, body)
    listing = TWO_GPUS["probe_gpu_1" if profile.gpus == ("1",) else "probe_all_gpus"]
    assert gpus.judge(profile, two_gpu_engine(), gpus.Probe.from_listing(listing)) is None


@pytest.mark.parametrize(("body", "probe", "cdi", "says", "fix"), [
    # a third GPU: CDI lists two
    ("GPUS=0,1,2\n", "refused_unknown_device", True,
     "the engine has no GPU 2 (its CDI GPUs: 0,1)", "ask only for GPUs the host has"),
    # the same on an engine with the runtime and no CDI (Docker < 28.2): the hook refuses
    ("GPUS=2\n", "refused_unknown_device", False,
     "the engine refused a container that asks for them", "ask only for GPUs the host has"),
    # a split over three GPUs: the container sees two
    ("GPUS=all\nEXTRA_ARGS=-ot blk\\.1\\.=CUDA2\n", "probe_all_gpus", True,
     "the -ot splits name CUDA2, but a container that asks for them sees 2 GPU(s)",
     "split over CUDA0..CUDA1 in EXTRA_ARGS"),
])
def test_a_two_gpu_engine_refuses_what_it_does_not_have(
        tmp_path: Path, body: str, probe: str, cdi: bool, says: str, fix: str) -> None:
    profile = gpu_profile(tmp_path, body)
    answer = TWO_GPUS[probe]
    probed = (gpus.Probe(error=answer) if probe.startswith("refused")
              else gpus.Probe.from_listing(answer))
    engine = two_gpu_engine() if cdi else gpus.Engine.from_info(
        {**TWO_GPUS["info"], "DiscoveredDevices": None}, "unix:///var/run/docker.sock")
    problem = gpus.judge(profile, engine, probed)
    assert problem is not None
    assert says in problem.what
    assert fix in problem.fix
    text = gpus.message(profile, engine, probed, problem)
    assert text.startswith(f"profile [bench-gpu] asks for GPUs {','.join(profile.gpus)}") \
        or text.startswith("profile [bench-gpu] asks for all GPUs")
    assert "runtimes io.containerd.runc.v2, nvidia, runc" in text
    assert ("nvidia.com/gpu=0, nvidia.com/gpu=1" if cdi else "CDI GPU devices: none") in text
    if probed.error:
        assert "probe container (local/llama.cpp:server): refused (failed to create task" \
            in text
    assert len(text.splitlines()) <= 10


def test_a_split_beyond_the_listed_gpus_is_found_without_asking_the_engine(
        tmp_path: Path) -> None:
    profile = gpu_profile(tmp_path, "GPUS=1\nEXTRA_ARGS=-ot exps=CUDA1\n")
    problem = gpus.judge(profile, None, None)
    assert problem is not None
    assert problem.what == ("the -ot splits name CUDA1, but GPUS=1 shows the container "
                            "1 GPU(s), numbered CUDA0..CUDA0")
    assert f"GPUS=0,1) or GPUS=all at {profile.where('GPUS')}" in problem.fix


def test_a_split_naming_only_cuda1_exposes_gpus_0_and_1(tmp_path: Path) -> None:
    """CUDA1 is the container's second GPU: exposing host GPU 1 alone would make it CUDA0."""
    profile = gpu_profile(tmp_path, "EXTRA_ARGS=-ot exps=CUDA1\n")
    assert profile.gpus == ("0", "1")
    assert gpus.judge(profile, None, None) is None


# --------------------------------------------------------------------------- this engine


@pytest.fixture
def client() -> Iterator[DockerClient]:
    client = docker_client()
    yield client
    client.close()


@pytest.mark.docker
def test_this_engine_has_no_gpu_and_says_so_before_any_server_container(
        client: DockerClient, tmp_path: Path) -> None:
    """The real engine's real answers: no NVIDIA runtime, a refused device request."""
    profile = gpu_profile(tmp_path, f"EXTRA_ARGS=--jinja -np 1 -ot {SPLIT}\n")
    run_id = uuid.uuid4().hex
    since = int(time.time()) - 1
    try:
        with pytest.raises(GpuUnavailableError) as info, llama_server(
                profile, log_path=tmp_path / "server.log", run_id=run_id, client=client):
            pytest.fail("a GPU profile must not start on an engine without GPUs")
        created = [event["Actor"]["Attributes"].get("bench.role") for event in client.events(
            since=since, until=int(time.time()) + 1, decode=True,
            filters={"type": "container", "event": "create",
                     "label": f"bench.run_id={run_id}"})]
    finally:
        left = client.containers.list(all=True, filters={"label": f"bench.run_id={run_id}"})
        for container in left:
            container.remove(force=True)
    assert not left, "the probe container was left behind"
    assert created == ["gpu-probe"], "only the probe may be created, never the server"
    assert not (tmp_path / "server.log").exists()

    text = str(info.value)
    engine = gpus.Engine.from_info(client.info())
    assert not engine.nvidia_runtime
    assert not engine.cdi_devices
    assert text.splitlines()[0] == (
        f"profile [bench-gpu] asks for GPUs 0,1 (from the -ot ...=CUDAn splits at "
        f"{profile.where('EXTRA_ARGS')}), but the engine has no NVIDIA runtime and no CDI "
        "GPU devices, and refused a container that asks for them")
    assert f"runtimes {', '.join(engine.runtimes)}" in text
    assert "probe container (local/llama.cpp:server): refused (could not select device " \
        "driver" in text
    assert "fix: install the NVIDIA Container Toolkit" in text
    assert f"or run on CPU: GPUS=none and N_GPU_LAYERS=0 in [bench-gpu] ({profile.where()})" \
        in text
    assert len(text.splitlines()) <= 10


@pytest.mark.docker
def test_a_gpu_profile_is_one_short_error_in_a_benchmark_run(
        bench_project: Any) -> None:
    """Through pytest: the error is the message, not fixture source, once per profile,
    and the profile is listed without a score."""
    project = bench_project(bench_project.profile(
        "bench-gpu", "smoke-tiny.gguf", N_GPU_LAYERS="99", IMAGE="local/llama.cpp:server",
        EXTRA_ARGS=f"-np 1 -t 1 -ot {SPLIT}"))
    (project.path / "bench_tests" / "test_life.py").unlink()
    for test in ("test_humaneval_plus.py", "test_mbpp_plus.py"):
        shutil.copy(ROOT / "bench_tests" / test, project.path / "bench_tests")
    proc = project.start("--bench-limit", "2", run_id="")
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1, output
    errors = output.split("= ERRORS =")[1].split("generated xml file")[0]
    first, second = errors.split("ERROR at setup of ")[1:3]
    assert "GpuUnavailableError: profile [bench-gpu] asks for GPUs 0,1" in first
    assert len(first.strip().splitlines()) <= 8, first
    assert "def " not in errors, "no fixture source"
    assert "plugin/" not in errors, "no traceback"
    assert "(the same error as " in second
    assert len(second.strip().splitlines()) <= 4
    summary = json.loads((project.path / "reports" / "summary.json").read_text())
    reasons = {(u["profile"], u["dataset"]): u["reason"] for u in summary["unscored"]}
    assert set(reasons) == {("bench-gpu", "humaneval"), ("bench-gpu", "mbpp")}, output
    assert all(r.startswith("GpuUnavailableError: profile [bench-gpu] asks for GPUs 0,1")
               for r in reasons.values())

