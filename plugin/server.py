"""llama-server in a Docker container: spec, start, wait for /health, always tear down.

No pytest here: the plugin's fixture is a thin ``with llama_server(...) as handle: yield``.

* :func:`build_container_spec` turns a :class:`~plugin.config.Profile` into everything
  ``containers.run`` needs (pure, unit-tested for every profile of models.conf).
* :func:`llama_server` starts the container, streams its log to a file, polls ``/health``
  until 200 and yields a :class:`ServerHandle`; the container is removed afterwards, on
  errors and Ctrl-C too. Profiles with ``BASE_URL`` get a handle for the running server.
* Every container carries ``bench.*`` labels (owner pid and host), is registered for
  removal at exit and on SIGTERM (:func:`cleanup_all`), and is watched by a reaper
  process (:mod:`plugin.reaper`) that removes it once its owner died without cleaning up
  (pytest-timeout's ``thread`` method kills the process; no ``finally`` runs then);
  :func:`reap_stale_containers` removes whatever is still left at the next session.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from docker.client import DockerClient  # submodule: ./docker/ shadows the SDK for mypy
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, Mount

from plugin import gpus, reaper
from plugin.config import Profile
from plugin.errors import (
    DockerUnavailableError,
    GpuUnavailableError,
    ImageMissingError,
    ModelFileMissingError,
    ServerStartError,
)

LABEL_HARNESS = "bench.harness"
HARNESS_NAME = "llama-bench"
LABEL_RUN_ID = "bench.run_id"
LABEL_PROFILE = "bench.profile"
LABEL_OWNER_PID = "bench.owner_pid"
LABEL_OWNER_HOST = "bench.owner_host"
LABEL_ROLE = "bench.role"
ROLE_SERVER = "server"
ROLE_GPU_PROBE = "gpu-probe"  # plugin.gpus: lists /dev with the server's device requests

CONTAINER_PORT = 8080
API_KEY_VARIABLE = "LLAMA_API_KEY"  # llama-server reads --api-key from it (not used)
API_KEY_FILE = "/run/llama-bench/api-key"  # in the container, for --api-key-file
REDACTED = "***"
MODELS_MOUNT = "/models"
# A BASE_URL server that refuses connections this long is not starting, it is not there
# (a loading llama-server already accepts connections and answers 503).
EXTERNAL_REFUSED_LIMIT_S = 30.0
STOP_TIMEOUT_S = 5
LOG_TAIL_LINES = 40
LOG_EXCERPT_LINES = 4  # log lines quoted in an error message
_TAIL_BYTES = 256 * 1024
_SHARD_RE = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<total>\d{5})\.gguf$")
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_REMOTE_SCHEMES = ("tcp", "ssh", "http", "https")


# --------------------------------------------------------------------------- Docker client


def docker_client(host: str | None = None, *, timeout: int = 60) -> DockerClient:
    """A client for ``host`` (``unix://``, ``tcp://``, ``ssh://``) or DOCKER_HOST / default.

    Raises DockerUnavailableError naming the engine and how to make it reachable.
    """
    try:
        if host:
            client = DockerClient(base_url=host, timeout=timeout,
                                  use_ssh_client=host.startswith("ssh://"))
        else:
            client = DockerClient.from_env(timeout=timeout)
        client.ping()
    except (DockerException, OSError) as exc:
        where = host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock (default)"
        raise DockerUnavailableError(
            f"cannot reach the Docker engine at {where}: {exc}\n"
            "  fix: start the daemon (systemctl start docker, or "
            "nohup dockerd >/var/log/dockerd.log 2>&1 &), or point DOCKER_HOST / "
            "--bench-docker-host / DOCKER_HOST= in models.conf at a reachable engine"
        ) from None
    return client


# --------------------------------------------------------------------------- container spec


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


def harness_labels(*, run_id: str, role: str, profile: str | None = None) -> dict[str, str]:
    """Labels that let :func:`reap_stale_containers` find a container whose owner died."""
    labels = {
        LABEL_HARNESS: HARNESS_NAME,
        LABEL_RUN_ID: run_id,
        LABEL_OWNER_PID: str(os.getpid()),
        LABEL_OWNER_HOST: socket.gethostname(),
        LABEL_ROLE: role,
    }
    if profile is not None:
        labels[LABEL_PROFILE] = profile
    return labels


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


def _tar(files: Mapping[str, bytes]) -> bytes:
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


def remote_hostname(docker_host: str | None) -> str | None:
    """Host name of a tcp:// or ssh:// engine (where published ports live), else None."""
    if not docker_host:
        return None
    parts = urlsplit(docker_host)
    return parts.hostname if parts.scheme in _REMOTE_SCHEMES else None


# --------------------------------------------------------------------------- model files


def model_files(profile: Profile) -> list[Path]:
    """The GGUF file, or every shard of a split model (``-00001-of-00003.gguf``)."""
    path = profile.model_path
    match = _SHARD_RE.match(path.name)
    if not match:
        return [path]
    total = int(match.group("total"))
    stem = match.group("stem")
    return [path.with_name(f"{stem}-{i:05d}-of-{total:05d}.gguf") for i in range(1, total + 1)]


def check_model_files(profile: Profile) -> None:
    """ModelFileMissingError (with the fix) unless the model and all its shards exist."""
    if profile.base_url or remote_hostname(engine_host(profile)):
        return  # an external server, or files on the remote engine's disk
    files = model_files(profile)
    if not files[0].exists():
        raise ModelFileMissingError(
            f"model file not found: {files[0]} (set --bench-models-dir / BENCH_MODELS_DIR, "
            f"or edit MODEL at {profile.where('MODEL')})")
    missing = [str(path) for path in files[1:] if not path.exists()]
    if missing:
        raise ModelFileMissingError(
            f"split model incomplete: {len(missing)} of {len(files)} shards missing next to "
            f"{files[0]}: {', '.join(missing)} (download every shard into that folder; "
            f"MODEL at {profile.where('MODEL')})")


# --------------------------------------------------------------------------- handle


@dataclass(frozen=True)
class ServerHandle:
    """A healthy llama-server. ``base_url`` is the server root (no ``/v1``)."""

    profile: Profile
    base_url: str
    container_id: str
    container_name: str
    load_time_s: float
    log_path: Path
    image: str
    image_id: str
    props: Mapping[str, Any]
    client: DockerClient | None = field(default=None, repr=False, compare=False)
    #: Model ids of ``/v1/models`` (external servers; identifies servers without /props).
    models: tuple[str, ...] = ()
    #: The profile's API key (API_KEY_ENV), sent as ``Authorization: Bearer``; never shown.
    api_key: str | None = field(default=None, repr=False, compare=False)
    #: Where the server is now: a restarted container gets a new host port (relocate()).
    _moved: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def url(self) -> str:
        """The server root now: ``base_url``, or where :meth:`relocate` found it since."""
        return self._moved.get("url", self.base_url)

    def relocate(self) -> str:
        """Re-read the container's published port (Docker assigns a new one when the
        container restarts) and return the server root; unchanged if unknown."""
        if self.client is not None and self.container_id:
            info = _inspect(self.client, self.container_id)
            if info is not None:
                self._follow(info)
        return self.url

    def _follow(self, info: Mapping[str, Any]) -> None:
        found = _base_url(self.profile, info)
        if found and found != self.url:
            self._moved["url"] = found

    @property
    def headers(self) -> dict[str, str]:
        """Headers every request to this server carries (the API key, if any)."""
        return auth_headers(self.api_key)

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    def is_alive(self, timeout: float = 5.0) -> bool:
        """True while the container runs (if a client is known) and /health answers 200."""
        if self.client is not None and self.container_id:
            info = _inspect(self.client, self.container_id)  # once: state and port
            if info is None or not info["State"]["Running"]:
                return False
            self._follow(info)
        with httpx.Client(trust_env=not self.container_id, headers=self.headers) as http:
            return _probe(http, self.url, timeout).healthy

    def is_running(self, timeout: float = 5.0) -> bool:
        """The server process still exists: its container runs (a paused or busy one
        counts), or, for an external server, /health answers."""
        if self.client is not None and self.container_id:
            return _container_running(self.client, self.container_id)
        return self.is_alive(timeout)

    def log_tail(self, n: int = LOG_TAIL_LINES) -> str:
        return read_log_tail(self.log_path, n)


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def redact(data: bytes, secrets: Iterable[str]) -> bytes:
    """``data`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            data = data.replace(secret.encode(), REDACTED.encode())
    return data


def read_log_tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    """Last ``n`` lines of a (possibly large, still growing) log file; "" if absent."""
    try:
        with path.open("rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, end - _TAIL_BYTES))
            data = fh.read()
    except FileNotFoundError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:]) if n > 0 else ""


def _inspect(client: DockerClient, container_id: str) -> dict[str, Any] | None:
    try:
        return cast(dict[str, Any], client.api.inspect_container(container_id))
    except (DockerException, OSError):
        return None


def _container_running(client: DockerClient, container_id: str) -> bool:
    info = _inspect(client, container_id)
    return bool(info and info["State"]["Running"])


# --------------------------------------------------------------------------- health polling


@dataclass(frozen=True)
class _Probe:
    healthy: bool
    seen: str  # what the last request returned, for error messages


@dataclass(frozen=True)
class _Exit:
    code: int
    oom_killed: bool
    error: str

    def describe(self) -> str:
        text = f"exited with code {self.code}"
        if self.oom_killed:
            text += " (killed: out of memory)"
        return f"{text} ({self.error})" if self.error else text


@dataclass(frozen=True)
class _Poll:
    healthy: bool
    elapsed_s: float
    attempts: int
    seen: str
    exited: _Exit | None = None
    refused_s: float = 0.0  # how long the last run of refused connections lasted


def _probe(http: httpx.Client, base_url: str, timeout: float,
           fallback: str | None = None) -> _Probe:
    """GET /health once; ``fallback`` (e.g. /v1/models) is tried when /health is 404."""
    try:
        response = http.get(f"{base_url}/health", timeout=timeout)
        if response.status_code == 404 and fallback:
            response = http.get(f"{base_url}{fallback}", timeout=timeout)
    except httpx.HTTPError as exc:
        return _Probe(False, f"{type(exc).__name__}: {exc}".strip())
    if response.status_code == 200:
        return _Probe(True, "HTTP 200")
    body = " ".join(response.text.split())[:200]
    return _Probe(False, f"HTTP {response.status_code} {body}".strip())


def _poll_health(base_url: str, *, timeout: float, poll_interval: float,
                 exited: Callable[[], _Exit | None], trust_env: bool = False,
                 fallback: str | None = None, headers: Mapping[str, str] | None = None,
                 refused_limit_s: float | None = None) -> _Poll:
    """Poll until 200, the container exits, ``timeout`` seconds pass, or (with
    ``refused_limit_s``) connections have been refused that long in a row."""
    start = time.monotonic()
    delay = min(0.05, poll_interval)
    attempts = 0
    refused_since: float | None = None
    with httpx.Client(trust_env=trust_env, headers=dict(headers or {})) as http:
        while True:
            remaining = timeout - (time.monotonic() - start)
            probe = _probe(http, base_url, min(5.0, max(0.1, remaining)), fallback)
            attempts += 1
            now = time.monotonic()
            elapsed = now - start
            if probe.healthy:
                return _Poll(True, elapsed, attempts, probe.seen)
            refused = probe.seen.startswith("ConnectError")
            refused_since = (refused_since or now) if refused else None
            refused_s = now - refused_since if refused_since is not None else 0.0
            if refused_limit_s is not None and refused_s >= refused_limit_s:
                return _Poll(False, elapsed, attempts, probe.seen, refused_s=refused_s)
            gone = exited()
            if gone is not None or elapsed >= timeout:
                return _Poll(False, elapsed, attempts, probe.seen, gone)
            time.sleep(min(delay, timeout - elapsed))
            delay = min(delay * 2, poll_interval)


def _fetch_props(base_url: str, *, trust_env: bool = False,
                 headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """GET /props (build_info, model_path, chat_template, ...); {} if not offered."""
    try:
        response = httpx.get(f"{base_url}/props", timeout=10.0, trust_env=trust_env,
                             headers=dict(headers or {}))
        data = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _fetch_model_ids(base_url: str, *, trust_env: bool = False,
                     headers: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Ids of GET /v1/models (OpenAI format); () if not offered."""
    try:
        response = httpx.get(f"{base_url}/v1/models", timeout=10.0, trust_env=trust_env,
                             headers=dict(headers or {}))
        data = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return ()
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return ()
    return tuple(str(e["id"]) for e in entries if isinstance(e, dict) and "id" in e)


# --------------------------------------------------------------------------- cleanup registry

_REGISTRY: dict[str, tuple[Any, str]] = {}
_REGISTRY_LOCK = threading.RLock()  # re-entrant: the SIGTERM handler may run mid-update
_hooks = {"atexit": False, "sigterm": False}


def register_cleanup(client: DockerClient, container_id: str, name: str) -> None:
    """Have :func:`cleanup_all` remove this container at exit or on SIGTERM unless
    :func:`unregister_cleanup` is called first (for containers started elsewhere, e.g.
    the evaluation sandbox)."""
    _register(client, container_id, name)


def unregister_cleanup(container_id: str) -> None:
    _unregister(container_id)


def _register(client: DockerClient, container_id: str, name: str) -> None:
    _install_exit_hooks()
    with _REGISTRY_LOCK:
        _REGISTRY[container_id] = (client, name)


def _unregister(container_id: str) -> None:
    with _REGISTRY_LOCK:
        _REGISTRY.pop(container_id, None)


def registered_containers() -> dict[str, str]:
    """Container id -> name of every container this process still has to remove."""
    with _REGISTRY_LOCK:
        return {cid: name for cid, (_, name) in _REGISTRY.items()}


def cleanup_all() -> list[str]:
    """Force-remove every container this process started and has not removed yet.

    Runs at exit and on SIGTERM; safe to call any time, from anywhere, more than once.
    """
    with _REGISTRY_LOCK:
        items = list(_REGISTRY.items())
        _REGISTRY.clear()
    removed = []
    for container_id, (client, name) in items:
        if _remove_container(client, container_id, name, graceful=False):
            removed.append(name)
    return removed


def _install_exit_hooks() -> None:
    """atexit once; the SIGTERM handler once, from the main thread (Python's rule)."""
    if not _hooks["atexit"]:
        _hooks["atexit"] = True
        atexit.register(cleanup_all)
    if not _hooks["sigterm"] and threading.current_thread() is threading.main_thread():
        _hooks["sigterm"] = True
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, _sigterm_handler(previous))


def _sigterm_handler(previous: Any) -> Callable[[int, FrameType | None], None]:
    """Remove our containers, then do what SIGTERM did before (by default: die of it)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        cleanup_all()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return handler


def _remove_container(client: DockerClient, container_id: str, name: str, *,
                      graceful: bool) -> bool:
    """Stop (if graceful) and remove; True once the container is gone (already, or now)."""
    try:
        if graceful:
            client.api.stop(container_id, timeout=STOP_TIMEOUT_S)
        client.api.remove_container(container_id, force=True)
    except NotFound:
        return True
    except APIError as exc:
        if exc.status_code == 409:  # removal already in progress (another cleanup)
            return True
        _warn_leak(name, exc)
        return False
    except (DockerException, OSError) as exc:
        _warn_leak(name, exc)
        return False
    return True


def _warn_leak(name: str, exc: BaseException) -> None:
    warnings.warn(f"could not remove container {name}: {exc} (remove it with: docker rm -f "
                  f"{name})", RuntimeWarning, stacklevel=3)


# --------------------------------------------------------------------------- reaping


def reap_stale_containers(client: DockerClient, *,
                          older_than_s: float = 0) -> list[str]:
    """Remove harness containers of this host whose owner process is dead; their names.

    Containers of other hosts, of live processes, or younger than ``older_than_s`` stay.
    """
    host = socket.gethostname()
    found = client.api.containers(all=True,
                                  filters={"label": f"{LABEL_HARNESS}={HARNESS_NAME}"})
    reaped: list[str] = []
    for entry in cast(list[dict[str, Any]], found):
        labels = entry.get("Labels") or {}
        if labels.get(LABEL_OWNER_HOST) != host or _owner_alive(labels.get(LABEL_OWNER_PID)):
            continue
        if time.time() - float(entry.get("Created", 0)) < older_than_s:
            continue
        name = (entry.get("Names") or ["/" + entry["Id"][:12]])[0].lstrip("/")
        if _remove_container(client, entry["Id"], name, graceful=False):
            reaped.append(name)
    return reaped


def reap_engines(hosts: Iterable[str | None], *, timeout: int = 5) -> list[str]:
    """:func:`reap_stale_containers` on each engine (None: DOCKER_HOST or the local socket);
    names removed. Engines that do not answer within ``timeout`` seconds are skipped."""
    reaped: list[str] = []
    for host in dict.fromkeys(host or None for host in hosts):
        try:
            client = docker_client(host, timeout=timeout)
        except DockerUnavailableError:
            continue
        try:
            reaped += reap_stale_containers(client)
        except (DockerException, OSError):
            pass  # the engine went away meanwhile: nothing to do now
        finally:
            client.close()
    return reaped


def _owner_alive(pid_label: str | None) -> bool:
    if not pid_label or not pid_label.isdigit() or int(pid_label) <= 0:
        return False
    try:
        os.kill(int(pid_label), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --------------------------------------------------------------------------- log streaming


class _LogPump(threading.Thread):
    """Follow the container's output into ``path`` so the log survives a crash of ours;
    across a restart of the container (``docker restart``, a restart policy) too."""

    #: A line longer than this is written in pieces (a secret cut in two may then show).
    MAX_PENDING = 64 * 1024
    #: After its output ends, the container is watched this long for a restart.
    RESTART_WAIT_S = 30.0

    def __init__(self, container: Any, path: Path, secrets: Iterable[str] = ()) -> None:
        super().__init__(name=f"log-{container.name}", daemon=True)
        self.container = container
        self.path = path
        self.secrets = tuple(s for s in secrets if s)
        self.stopping = threading.Event()  # set by the teardown: no restart to wait for
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")

    def run(self) -> None:
        since: float | None = None
        with self.path.open("ab") as fh:
            while True:
                ended = self._follow(fh, since)
                if self.stopping.is_set() or not self._restarted():
                    return
                fh.write(b"[container restarted: its log goes on]\n")
                fh.flush()
                since = ended

    def _follow(self, fh: Any, since: float | None) -> float:
        """Copy the output until it ends; the time it ended (the next ``since``)."""
        pending = b""  # whole lines are redacted, so a secret split by chunking still goes
        kwargs = {"since": since} if since is not None else {}
        try:
            for chunk in self.container.logs(stream=True, follow=True, **kwargs):
                pending += chunk
                cut = pending.rfind(b"\n") + 1
                if not cut and len(pending) > self.MAX_PENDING:
                    cut = len(pending)
                if cut:
                    fh.write(redact(pending[:cut], self.secrets))
                    fh.flush()
                    pending = pending[cut:]
        except Exception as exc:  # the stream breaks when the container goes away
            fh.write(redact(pending, self.secrets))
            pending = b""
            if not self.stopping.is_set():
                fh.write(f"\n[log stream ended: {type(exc).__name__}: {exc}]\n".encode())
        fh.write(redact(pending, self.secrets))
        fh.flush()
        return time.time()

    def _restarted(self) -> bool:
        """Whether the container runs again within RESTART_WAIT_S (False once removed)."""
        deadline = time.monotonic() + self.RESTART_WAIT_S
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                self.container.reload()
            except Exception:  # removed, or the engine is gone: nothing more to follow
                return False
            if self.container.status == "running":
                return True
            self.stopping.wait(0.2)
        return False


# --------------------------------------------------------------------------- lifecycle


@contextmanager
def llama_server(profile: Profile, *, log_path: Path, run_id: str,
                 client: DockerClient | None = None,
                 health_timeout: float | None = None,
                 poll_interval: float = 0.5) -> Iterator[ServerHandle]:
    """A healthy llama-server for ``profile``; the container is removed afterwards, always.

    Raises ModelFileMissingError before touching Docker, ImageMissingError, or
    ServerStartError (crash or timeout, with the log tail). BASE_URL profiles: no
    container, the running server is health-checked and described.
    """
    timeout = health_timeout if health_timeout is not None else profile.health_timeout
    if poll_interval <= 0 or timeout <= 0:
        raise ValueError(f"poll_interval ({poll_interval}) and health_timeout ({timeout}) "
                         "must be positive")
    if profile.base_url:
        yield _external_handle(profile, log_path=log_path, health_timeout=timeout,
                               poll_interval=poll_interval)
        return
    check_model_files(profile)
    own_client = client is None
    client = client or docker_client(profile.docker_host)
    try:
        spec = build_container_spec(profile, run_id=run_id)
        _require_image(client, profile)
        check_gpus(client, profile, spec, run_id=run_id)
        container = _create_registered(client, spec)
        pump: _LogPump | None = None
        handle: ServerHandle | None = None
        try:
            _start(container, profile, spec)
            pump = _LogPump(container, log_path, secrets=spec.secrets)
            pump.start()
            handle = _wait_ready(profile, spec, client, container, log_path,
                                 timeout=timeout, poll_interval=poll_interval)
            yield handle
        finally:
            _teardown(client, container.id, spec.name, pump, graceful=handle is not None)
    finally:
        if own_client:
            client.close()


def _teardown(client: DockerClient, container_id: str, name: str,
              pump: _LogPump | None, *, graceful: bool) -> None:
    """Stop (a server that was healthy: gracefully) and remove; idempotent."""
    if pump is not None:
        pump.stopping.set()
    if _remove_container(client, container_id, name, graceful=graceful):
        _unregister(container_id)  # else cleanup_all retries at exit
    if pump is not None:
        pump.join(timeout=2.0)


DEFAULT_CPU_IMAGE = "ghcr.io/ggml-org/llama.cpp:server"
LOCAL_CPU_IMAGE = "local/llama.cpp:server"  # built by docker/llama-server/build-debian.sh
_said: set[tuple[str, str]] = set()


def ensure_image(client: DockerClient, profile: Profile,
                 say: Callable[[str], None] = lambda _line: None) -> Profile:
    """The profile, with an image that is on the engine: already there; for the stock CPU
    image (not chosen on the command line or in the environment), the locally built
    ``local/llama.cpp:server`` when that is there (said once per engine); else pulled
    through the engine, progress through ``say``. Raises ImageMissingError with both
    fixes when the pull fails."""
    if _has_image(client, profile.image):
        return profile
    if (not profile.gpus and profile.image == DEFAULT_CPU_IMAGE
            and "CPU_IMAGE" not in profile.overrides and _has_image(client, LOCAL_CPU_IMAGE)):
        key = (reaper.engine_url(client) or "", profile.image)
        if key not in _said:
            _said.add(key)
            say(f"llama-bench: {DEFAULT_CPU_IMAGE} is not on the Docker engine; CPU profiles "
                f"use the locally built {LOCAL_CPU_IMAGE} (pass --bench-cpu-image to choose)")
        return replace(profile, image=LOCAL_CPU_IMAGE)
    key_name = "IMAGE" if profile.gpus else "CPU_IMAGE"
    try:
        _pull(client, profile.image, say)
    except (APIError, DockerException, OSError) as exc:
        raise ImageMissingError(
            f"image {profile.image} is not on the Docker engine and could not be pulled "
            f"({_first_line(exc)}); profile [{profile.name}], {key_name} from "
            f"{profile.where(key_name)}\n"
            f"  fix: make the registry reachable (docker login) and run "
            f"docker pull {profile.image}, or build the CPU image from Debian packages "
            f"(make images) and pass --bench-cpu-image {LOCAL_CPU_IMAGE}") from None
    return profile


def _has_image(client: DockerClient, image: str) -> bool:
    try:
        client.images.get(image)
    except ImageNotFound:
        return False
    return True


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _pull(client: DockerClient, image: str, say: Callable[[str], None]) -> None:
    """``docker pull`` through the SDK; one progress line per layer state change."""
    repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] \
        else (image, "", "latest")
    say(f"llama-bench: pulling {image}")
    seen: dict[str, str] = {}
    for event in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
        if "error" in event:
            raise APIError(str(event["error"]))
        layer, status = str(event.get("id", "")), str(event.get("status", ""))
        if layer and status and seen.get(layer) != status and "ing" not in status[-3:]:
            seen[layer] = status
            say(f"llama-bench: {image}: {layer} {status}")
    if not _has_image(client, image):
        raise APIError(f"the pull of {image} ended without the image")
    say(f"llama-bench: pulled {image}")


def _require_image(client: DockerClient, profile: Profile) -> None:
    try:
        client.images.get(profile.image)
    except ImageNotFound:
        key = "IMAGE" if profile.gpus else "CPU_IMAGE"
        raise ImageMissingError(
            f"image {profile.image} not found on the Docker engine (profile "
            f"[{profile.name}], {key} from {profile.where(key)})\n"
            f"  fix: docker pull {profile.image}, or build the local CPU image with "
            "docker/llama-server/build-debian.sh and pass --bench-cpu-image / --bench-image"
        ) from None


def check_gpus(client: DockerClient, profile: Profile, spec: ContainerSpec, *,
               run_id: str) -> None:
    """The GPU preflight (plugin.gpus): raise GpuUnavailableError, naming the profile, the
    GPUs asked for, what the engine has and the fix, before the server container exists."""
    if not spec.device_requests:
        return
    problem = gpus.judge(profile, None, None)  # the profile alone
    engine = probe = None
    if problem is None:
        try:
            info = client.info()
        except (DockerException, OSError) as exc:
            raise DockerUnavailableError(f"GET /info failed: {_first_line(exc)}") from None
        engine = gpus.Engine.from_info(info, reaper.engine_url(client) or "(default)")
        probe = gpus.run_probe(
            client, profile, spec.device_requests,
            labels=harness_labels(run_id=run_id, role=ROLE_GPU_PROBE, profile=profile.name),
            name=f"{spec.name}-gpu-probe")
        problem = gpus.judge(profile, engine, probe)
    if problem is not None:
        raise GpuUnavailableError(gpus.message(profile, engine, probe, problem))


def _create_registered(client: DockerClient, spec: ContainerSpec) -> Any:
    """Create and register for cleanup; interrupted half-way (Ctrl-C, a pytest-timeout
    signal), the container may exist without us knowing its id: remove it by name."""
    reaper.watch(client)
    try:
        container = _create(client, spec)
        _register(client, container.id, spec.name)
    except ServerStartError:
        raise  # Docker refused: nothing was created (a name clash is another run's)
    except BaseException:
        _remove_container(client, spec.name, spec.name, graceful=False)
        raise
    return container


def _create(client: DockerClient, spec: ContainerSpec) -> Any:
    try:
        container = client.containers.create(**spec.run_kwargs())
    except APIError as exc:
        if exc.status_code == 409:
            raise ServerStartError(
                f"container name {spec.name} is already in use: {exc.explanation}\n"
                f"  fix: another run with the same run id owns it; wait for it, or remove it "
                f"with: docker rm -f {spec.name}") from None
        raise ServerStartError(f"Docker refused to create {spec.name} (image {spec.image}): "
                               f"{exc.explanation}") from None
    if spec.files:
        try:
            if not container.put_archive("/", _tar(spec.files)):
                raise APIError("put_archive answered false")
        except (APIError, DockerException) as exc:
            with contextlib.suppress(DockerException):
                container.remove(force=True)
            raise ServerStartError(f"could not copy the API key file into {spec.name}: "
                                   f"{_first_line(exc)}") from None
    return container


def _start(container: Any, profile: Profile, spec: ContainerSpec) -> None:
    try:
        container.start()
    except APIError as exc:
        hint = ""
        if spec.device_requests and "device driver" in str(exc.explanation):
            hint = ("\n  fix: install the NVIDIA Container Toolkit on the Docker host, or "
                    f"run on CPU: GPUS=none and N_GPU_LAYERS=0 in [{profile.name}] "
                    f"({profile.where()})")
        raise ServerStartError(f"Docker could not start {spec.name} (image {spec.image}): "
                               f"{exc.explanation}{hint}") from None


def _wait_ready(profile: Profile, spec: ContainerSpec, client: DockerClient,
                container: Any, log_path: Path, *, timeout: float,
                poll_interval: float) -> ServerHandle:
    started = time.monotonic()
    api_key = spec.api_key
    info = client.api.inspect_container(container.id)
    base_url = _base_url(profile, info)
    if base_url is None:  # no port binding: the container is already gone
        gone = _exit_of(info) or _Exit(-1, False, "no host port was published")
        result = _Poll(False, 0.0, 0, "nothing polled", gone)
    else:
        result = _poll_health(base_url, timeout=timeout, poll_interval=poll_interval,
                              exited=lambda: _exit_state(client, container.id),
                              headers=auth_headers(api_key))
    if base_url is None or not result.healthy:
        url = f"{base_url}/health" if base_url else "(nothing: no host port published)"
        raise _start_error(profile, spec, client, container.id, log_path, url=url,
                           timeout=timeout, poll_interval=poll_interval, result=result)
    load_time_s = time.monotonic() - started
    return ServerHandle(
        profile=profile, base_url=base_url, container_id=container.id,
        container_name=spec.name, load_time_s=load_time_s,
        log_path=log_path, image=spec.image, image_id=str(info.get("Image", "")),
        props=_fetch_props(base_url, headers=auth_headers(api_key)), client=client,
        api_key=api_key,
    )


def _exit_state(client: DockerClient, container_id: str) -> _Exit | None:
    try:
        return _exit_of(client.api.inspect_container(container_id))
    except NotFound:
        return _Exit(-1, False, "the container was removed from outside")


def _exit_of(info: Mapping[str, Any]) -> _Exit | None:
    state = info["State"]
    if state.get("Status") not in ("exited", "dead"):
        return None
    return _Exit(int(state.get("ExitCode", -1)), bool(state.get("OOMKilled")),
                 str(state.get("Error") or ""))


def _base_url(profile: Profile, info: Mapping[str, Any],
              container_port: int = CONTAINER_PORT) -> str | None:
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(f"{container_port}/tcp") or []:
        if binding.get("HostPort"):
            host = remote_hostname(engine_host(profile)) or "127.0.0.1"
            host = f"[{host}]" if ":" in host else host
            return f"http://{host}:{binding['HostPort']}"
    return None


def _start_error(profile: Profile, spec: ContainerSpec, client: DockerClient,
                 container_id: str, log_path: Path, *, url: str, timeout: float,
                 poll_interval: float, result: _Poll) -> ServerStartError:
    """Say what was polled, for how long, what came back, the log lines that tell why
    (this start's own log), and the fix: about ten lines."""
    if result.exited is not None:
        what = (f"llama-server {result.exited.describe()} before /health answered 200 "
                f"(after {result.elapsed_s:.1f} s)")
        fix = (f"see the log lines above; check EXTRA_ARGS at {profile.where('EXTRA_ARGS')} "
               "and the model file")
    else:
        what = f"llama-server did not become healthy within {timeout:g} s"
        fix = (f"if the model is just slow to load, raise HEALTH_TIMEOUT "
               f"({profile.where('HEALTH_TIMEOUT')}) or --bench-health-timeout; otherwise "
               "see the log lines above")
    tail = _container_log_tail(client, container_id, log_path, secrets=spec.secrets)
    return ServerStartError(
        f"{what}; profile [{profile.name}] ({profile.where()})\n"
        f"  polled: GET {url} every <= {poll_interval:g} s, {result.attempts} attempts in "
        f"{result.elapsed_s:.1f} s; last answer: {result.seen}\n"
        f"  command: llama-server {' '.join(spec.command)}\n"
        f"  log ({log_path}):\n{_indent(log_excerpt(tail))}\n"
        f"  fix: {fix}")


#: Log lines that say why a server stopped or never got ready.
_TELLING = re.compile(r"error|fail|abort|exception|terminate|unable|cannot|could not|"
                      r"invalid|unknown|out of memory|not found|no such|denied|killed",
                      re.IGNORECASE)


def log_excerpt(tail: str, n: int = LOG_EXCERPT_LINES) -> str:
    """The last ``n`` lines of ``tail`` that tell of an error, else its last ``n`` lines
    (an error message shows these few lines; the whole log is in the file it names)."""
    lines = [line for line in tail.splitlines() if line.strip()]
    telling = [line for line in lines if _TELLING.search(line)]
    return "\n".join((telling or lines)[-n:])


def _container_log_tail(client: DockerClient, container_id: str, log_path: Path,
                        n: int = LOG_TAIL_LINES, secrets: Iterable[str] = ()) -> str:
    try:
        data = redact(cast(bytes, client.api.logs(container_id, stdout=True, stderr=True,
                                                  tail=n)), secrets)
    except (DockerException, OSError):
        return read_log_tail(log_path, n)  # written redacted by _LogPump
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-n:])


def _indent(text: str, prefix: str = "    | ") -> str:
    return "\n".join(prefix + line for line in text.splitlines()) or f"{prefix}(empty)"


# --------------------------------------------------------------------------- external server


def _external_handle(profile: Profile, *, log_path: Path, health_timeout: float,
                     poll_interval: float) -> ServerHandle:
    """Handle for BASE_URL: health-checked (/health, else /v1/models), /props if offered."""
    base_url = normalize_base_url(cast(str, profile.base_url))
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text(f"external server {base_url} (BASE_URL at {profile.where('BASE_URL')});"
                        " no container, no server log\n", encoding="utf-8")
    started = time.monotonic()
    api_key = profile.api_key()
    headers = auth_headers(api_key)
    result = _poll_health(base_url, timeout=health_timeout, poll_interval=poll_interval,
                          exited=lambda: None, trust_env=True, fallback="/v1/models",
                          headers=headers, refused_limit_s=EXTERNAL_REFUSED_LIMIT_S)
    if result.refused_s >= EXTERNAL_REFUSED_LIMIT_S:
        raise ServerStartError(
            f"external server {base_url} refused every connection for "
            f"{result.refused_s:.0f} s ({result.attempts} attempts; last: {result.seen}): "
            f"nothing listens there\n  fix: start the server, or correct BASE_URL "
            f"({profile.where('BASE_URL')})")
    if not result.healthy:
        raise ServerStartError(
            f"external server {base_url} did not answer GET {base_url}/health (or /v1/models) "
            f"with 200 within {health_timeout:g} s ({result.attempts} attempts); last answer: "
            f"{result.seen}\n  fix: start the server, or correct BASE_URL at "
            f"{profile.where('BASE_URL')}")
    return ServerHandle(
        profile=profile, base_url=base_url, container_id="", container_name="",
        load_time_s=time.monotonic() - started, log_path=log_path, image="", image_id="",
        props=_fetch_props(base_url, trust_env=True, headers=headers),
        models=_fetch_model_ids(base_url, trust_env=True, headers=headers), api_key=api_key,
    )


def normalize_base_url(url: str) -> str:
    """Server root: no trailing slash and no ``/v1`` (llama-server's /health is at the root)."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")
