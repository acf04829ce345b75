"""The llama-server container of a profile, as data: command, mounts, ports, devices, files."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from plugin.config.profile import Profile, shard_files
from plugin.containers.client import remote_hostname
from plugin.containers.labels import HARNESS_NAME, ROLE_SERVER, harness_labels
from plugin.containers.sdk import DeviceRequest, Mount
from plugin.errors import (
    ModelFileMissingError,
)

CONTAINER_PORT = 8080
API_KEY_FILE = "/run/llama-bench/api-key"  # in the container, for --api-key-file
MODELS_MOUNT = "/models"
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class ContainerSpec:
    """Everything passed to ``containers.run`` for one llama-server container."""

    image: str
    command: tuple[str, ...]
    device_requests: tuple[DeviceRequest, ...]
    mounts: tuple[Mount, ...]
    environment: Mapping[str, str] = field(repr=False)  # may hold the API key
    ports: Mapping[str, tuple[str, int | None]]
    labels: Mapping[str, str]
    name: str
    #: Files copied into the created container before it starts (path -> bytes): the API
    #: key, which then appears in no ``docker inspect`` field.
    files: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values the server log must never show (redacted as it is written)."""
        return (*(v for v in self.environment.values() if v),
                *(c.decode().strip() for c in self.files.values() if c.strip()))

    @property
    def api_key(self) -> str | None:
        content = self.files.get(API_KEY_FILE)
        return content.decode().strip() if content else None

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``client.containers.run`` (or ``.create``)."""
        return {
            "image": self.image,
            "command": list(self.command),
            "device_requests": list(self.device_requests) or None,
            "mounts": list(self.mounts),
            "environment": dict(self.environment),
            "ports": dict(self.ports),
            "labels": dict(self.labels),
            "name": self.name,
            "detach": True,
        }


def container_name(profile: Profile, run_id: str) -> str:
    return f"{HARNESS_NAME}-{profile.name}-{_NAME_UNSAFE.sub('_', run_id)}"


def build_container_spec(profile: Profile, *, run_id: str,
                         container_port: int = CONTAINER_PORT) -> ContainerSpec:
    """The container for ``profile``: model folder read-only at /models, port on loopback."""
    mount_source, model_in_container = model_mount(profile)
    publish_on = "0.0.0.0" if remote_hostname(engine_host(profile)) else "127.0.0.1"
    return ContainerSpec(
        image=profile.image,
        command=server_command(profile, model_in_container, container_port),
        device_requests=device_requests(profile.gpus),
        mounts=(Mount(target=MODELS_MOUNT, source=str(mount_source), type="bind",
                      read_only=True),),
        environment={},
        ports={f"{container_port}/tcp": (publish_on, None)},
        labels=harness_labels(run_id=run_id, role=ROLE_SERVER, profile=profile.name),
        name=container_name(profile, run_id),
        files=server_files(profile),
    )


def server_files(profile: Profile) -> dict[str, bytes]:
    """The API key file when the profile has API_KEY_ENV: llama-server reads it with
    ``--api-key-file``; the key is in no environment variable, argument or label (so not
    in ``docker inspect``) and in no log. It is copied into the created container rather
    than bind-mounted: a mount names a path on the engine's host, which for a remote
    engine (DOCKER_HOST=ssh://...) is not this machine."""
    key = profile.api_key()
    return {API_KEY_FILE: f"{key}\n".encode()} if key else {}


def tar_archive(files: Mapping[str, bytes]) -> bytes:
    """A tar of ``files`` (absolute container paths) for put_archive; mode 0444, as the
    image may run llama-server as any user."""
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, content in files.items():
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(content), 0o444, int(time.time())
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def model_mount(profile: Profile) -> tuple[Path, PurePosixPath]:
    """(host folder mounted at /models, model path inside the container).

    MODELS_DIR is mounted, so MODEL's subpath works and split shards next to the first
    one are visible. A MODEL that is absolute or leaves MODELS_DIR (``..``) mounts its own
    folder instead.
    """
    model = PurePosixPath(profile.model)
    if not model.is_absolute() and ".." not in model.parts:
        return _normalized(profile.models_dir), PurePosixPath(MODELS_MOUNT, model)
    path = _normalized(profile.model_path)
    return path.parent, PurePosixPath(MODELS_MOUNT, path.name)


def _normalized(path: Path) -> Path:
    """Absolute, without ``..`` (symlinks kept: the user's path is what Docker mounts)."""
    return Path(os.path.normpath(path.absolute()))


def server_command(profile: Profile, model: PurePosixPath,
                   container_port: int = CONTAINER_PORT) -> tuple[str, ...]:
    args = ["-m", str(model), "-c", str(profile.ctx_size), "-ngl", profile.n_gpu_layers]
    if profile.fit:
        args += ["-fit", profile.fit]
    args += ["--host", "0.0.0.0", "--port", str(container_port)]
    if profile.api_key_env:
        args += ["--api-key-file", API_KEY_FILE]
    return (*args, *profile.extra_args)


def device_requests(gpus: tuple[str, ...]) -> tuple[DeviceRequest, ...]:
    """GPUS=all -> every GPU; ids -> those GPUs; none -> no request (CPU)."""
    if not gpus:
        return ()
    if gpus == ("all",):
        return (DeviceRequest(count=-1, capabilities=[["gpu"]]),)
    return (DeviceRequest(device_ids=list(gpus), capabilities=[["gpu"]]),)


def engine_host(profile: Profile) -> str | None:
    """The profile's Docker engine: its DOCKER_HOST (or --bench-docker-host), else the
    DOCKER_HOST environment variable; None means the local socket."""
    return profile.docker_host or os.environ.get("DOCKER_HOST") or None


def model_files(profile: Profile) -> list[Path]:
    """The GGUF file, or every shard of a split model (``-00001-of-00003.gguf``)."""
    return shard_files(profile.model_path)


def missing_model_message(profile: Profile) -> str:
    return (f"model file not found: {profile.model_path} (set --bench-models-dir / "
            f"BENCH_MODELS_DIR, or edit MODEL at {profile.where('MODEL')})")


def check_model_files(profile: Profile) -> None:
    """ModelFileMissingError (with the fix) unless the model and all its shards exist."""
    if profile.base_url or remote_hostname(engine_host(profile)):
        return  # an external server, or files on the remote engine's disk
    files = model_files(profile)
    if not files[0].exists():
        raise ModelFileMissingError(missing_model_message(profile))
    missing = [str(path) for path in files[1:] if not path.exists()]
    if missing:
        raise ModelFileMissingError(
            f"split model incomplete: {len(missing)} of {len(files)} shards missing next to "
            f"{files[0]}: {', '.join(missing)} (download every shard into that folder; "
            f"MODEL at {profile.where('MODEL')})")
