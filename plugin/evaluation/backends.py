"""Where judging runs: the sandbox container (docker) or a local process (local)."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Protocol

from plugin.config.defaults import SANDBOX_IMAGE
from plugin.containers.client import docker_client
from plugin.containers.labels import LABEL_PURPOSE, ROLE_SANDBOX, harness_labels
from plugin.containers.managed import managed_container
from plugin.containers.owner import LEGACY_PID
from plugin.containers.sdk import APIError, DockerException, ImageNotFound, Ulimit
from plugin.datasets import PROJECT_ROOT
from plugin.errors import DockerUnavailableError, SandboxError
from plugin.evaluation.events import Events, read_events
from plugin.evaluation.plan import Limits
from plugin.sandbox import protocol
from plugin.sandbox.compat import evalplus_version

log = logging.getLogger(__name__)

DEFAULT_IMAGE = SANDBOX_IMAGE
SANDBOXES = ("docker", "local")
GIB = 1 << 30
SANDBOX_CPU_SHARES = 8192  # Docker's default is 1024
SANDBOX_DIR = Path(__file__).resolve().parents[1] / "sandbox"  # plugin/sandbox
NO_DOCKER_FIX = ("without Docker use --sandbox local (NOT a sandbox: runs generated code "
                 "as you)")
LOCAL_WARNING = (
    "sandbox='local': generated code runs as YOUR user on this machine, with your files, "
    "network and environment. This is NOT a sandbox; use it only for code you trust."
)


# --------------------------------------------------------------------------------------
# Backends: one Docker container per run, or a local subprocess
# --------------------------------------------------------------------------------------
class Backend(Protocol):
    def runtime_id(self) -> str: ...

    def run_oracle(self, dataset_file: Path, dataset_name: str, out_dir: Path,
                   workers: int) -> Events: ...

    def run_evaluation(self, oracle_dir: Path, solutions_file: Path, workers: int,
                       limits: Limits) -> Events: ...


def make_backend(sandbox: str, image: str, docker_client: Any) -> Backend:
    if sandbox == "local":
        return LocalSandbox()
    return DockerSandbox(image, docker_client)


class DockerSandbox:
    """Runs the runner in one hardened container per call; always removes it."""

    def __init__(self, image: str = DEFAULT_IMAGE, client: Any = None) -> None:
        self.client = (client if client is not None
                       else docker_client(timeout=120, fix=NO_DOCKER_FIX))
        self.image_name = image
        self.image = _find_image(self.client, image)

    def runtime_id(self) -> str:
        return f"docker:{self.image.id}"

    def run_oracle(self, dataset_file: Path, dataset_name: str, out_dir: Path,
                   workers: int) -> Events:
        volumes = {
            str(dataset_file.resolve()): {"bind": protocol.DATASET_MOUNT, "mode": "ro"},
            str(out_dir.resolve()): {"bind": protocol.OUT_MOUNT, "mode": "rw"},
        }
        args = oracle_args(protocol.DATASET_MOUNT, dataset_name, protocol.OUT_MOUNT, workers)
        return self._run(args, volumes, workers, purpose="oracle")

    def run_evaluation(self, oracle_dir: Path, solutions_file: Path, workers: int,
                       limits: Limits) -> Events:
        volumes = {
            str(oracle_dir.resolve()): {"bind": protocol.ORACLE_MOUNT, "mode": "ro"},
            str(solutions_file.resolve()): {"bind": protocol.SOLUTIONS_MOUNT, "mode": "ro"},
        }
        args = evaluate_args(protocol.ORACLE_MOUNT, protocol.SOLUTIONS_MOUNT, workers, limits)
        return self._run(args, volumes, workers, purpose="evaluate")

    def _run(self, args: list[str], volumes: dict[str, dict[str, str]], workers: int,
             purpose: str) -> Events:
        volumes = {str(SANDBOX_DIR): {"bind": protocol.RUNNER_MOUNT, "mode": "ro"}, **volumes}
        spec = sandbox_container_spec(self.image_name, args, volumes, workers, purpose)
        what = f"sandbox container ({purpose}, image {self.image_name})"
        try:
            with managed_container(self.client, spec, refused=lambda exc: SandboxError(
                    f"cannot create the {what}: {exc}")) as managed:
                container = managed.container
                container.start()
                chunks = container.logs(stream=True, follow=True, stdout=True, stderr=False)
                yield from read_events(chunks, what=what)
                status = container.wait(timeout=60)
                code = int(status.get("StatusCode", -1))
                if code != 0:
                    tail = container.logs(stdout=False, stderr=True,
                                          tail=30).decode(errors="replace")
                    raise SandboxError(f"{what} exited with {code}: {tail}")
        except (DockerException, OSError) as exc:  # requests errors are OSErrors
            raise SandboxError(f"Docker failed running the {what}: {exc}") from exc


def sandbox_container_spec(image: str, args: list[str], volumes: dict[str, dict[str, str]],
                           workers: int, purpose: str) -> dict[str, Any]:
    """Keyword arguments of ``containers.create`` for a sandbox container (kept pure)."""
    cpus = min(workers, os.cpu_count() or 1)
    memory = _memory_limit(workers)
    return {
        "image": image,
        "command": ["python3", "-m", protocol.RUNNER_PACKAGE, *args],
        "user": "65534:65534",
        "network_mode": "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "tmpfs": {"/tmp": "rw,nosuid,nodev,size=512m,mode=1777"},
        "pids_limit": 128 + 64 * workers,
        "mem_limit": memory,
        "memswap_limit": memory,
        "nano_cpus": int(cpus * 1e9),
        # Per-test limits are wall-clock: a sandbox starved by busy sibling containers (e.g.
        # llama-servers whose threads spin) times out correct code. Weigh it above them.
        "cpu_shares": SANDBOX_CPU_SHARES,
        "ulimits": [Ulimit(name="core", soft=0, hard=0)],
        "environment": {
            "PYTHONPATH": f"/opt/evalplus:{Path(protocol.RUNNER_MOUNT).parent}",
            "PYTHONDONTWRITEBYTECODE": "1", "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        },
        "volumes": volumes,
        "working_dir": "/tmp",
        "labels": {**harness_labels(role=ROLE_SANDBOX), LABEL_PURPOSE: purpose,
                   "bench.run": uuid.uuid4().hex,
                   LEGACY_PID: str(os.getpid())},  # as sandboxes were always labelled
        "detach": True,
    }


def _memory_limit(workers: int) -> int:
    """EvalPlus caps each test process at 4 GiB (RLIMIT_AS); leave room for that per worker,
    but never more than 3/4 of this machine's memory."""
    wanted = workers * 4 * GIB + 2 * GIB
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return wanted
    return int(min(wanted, max(2 * GIB, total * 3 // 4)))


def _find_image(client: Any, image: str) -> Any:
    try:
        return client.images.get(image)
    except ImageNotFound:
        raise SandboxError(
            f"sandbox image {image!r} is not in the Docker engine; fix: build it with "
            "'docker/sandbox/build-debian.sh' (no registry needed; SANDBOX_IMAGE sets the name) "
            f"or 'docker build -t {image} docker/sandbox'"
        ) from None
    except APIError as exc:
        raise DockerUnavailableError(f"Docker engine error looking up {image!r}: {exc}") from exc


class LocalSandbox:
    """The same runner as a local subprocess: NO isolation (for machines without Docker)."""

    def __init__(self) -> None:
        log.warning(LOCAL_WARNING)
        print(f"WARNING: {LOCAL_WARNING}", file=sys.stderr)

    def runtime_id(self) -> str:

        return f"local:{sys.executable}:{platform.python_version()}:{evalplus_version()}"

    def run_oracle(self, dataset_file: Path, dataset_name: str, out_dir: Path,
                   workers: int) -> Events:
        args = oracle_args(str(dataset_file), dataset_name, str(out_dir), workers)
        return self._run(args, purpose="oracle")

    def run_evaluation(self, oracle_dir: Path, solutions_file: Path, workers: int,
                       limits: Limits) -> Events:
        args = evaluate_args(str(oracle_dir), str(solutions_file), workers, limits)
        return self._run(args, purpose="evaluate")

    def _run(self, args: list[str], purpose: str) -> Events:
        env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TMPDIR") if k in os.environ}
        env.update({"PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1",
                    "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        with tempfile.TemporaryFile() as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "plugin.sandbox", *args], cwd=tempfile.gettempdir(),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=env,
                start_new_session=True,
            )
            try:
                stdout: Any = proc.stdout
                yield from read_events(iter(lambda: stdout.read1(65536), b""),
                                   what=f"local runner ({purpose})")
                code = proc.wait(timeout=60)
                if code != 0:
                    stderr.seek(0)
                    tail = stderr.read()[-4000:].decode(errors="replace")
                    raise SandboxError(f"local runner ({purpose}) exited with {code}: {tail}")
            finally:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def evaluate_args(oracle_dir: str, solutions: str, workers: int, limits: Limits) -> list[str]:
    return ["evaluate", "--oracle", oracle_dir, "--solutions", solutions,
            "--workers", str(workers), "--min-time-limit", str(limits.min_time_limit),
            "--gt-time-limit-factor", str(limits.gt_time_limit_factor),
            "--policy", limits.policy, "--memory-budget", str(limits.memory_budget),
            *([] if limits.load_scaling else ["--no-load-scaling"])]


def oracle_args(dataset_file: str, dataset_name: str, out_dir: str, workers: int) -> list[str]:
    return ["oracle", "--dataset", dataset_file, "--dataset-name", dataset_name,
            "--out", out_dir, "--workers", str(workers)]
