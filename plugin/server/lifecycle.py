"""A profile's llama-server from start to removal (or an external BASE_URL server)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx

from plugin.config.profile import Profile
from plugin.containers.client import (
    container_running,
    docker_client,
    engine_url,
    first_line,
    inspect_container,
)
from plugin.containers.labels import ROLE_GPU_PROBE, harness_labels
from plugin.containers.managed import Managed, managed_container
from plugin.containers.sdk import APIError, DockerClient, DockerException
from plugin.errors import (
    DockerUnavailableError,
    GpuUnavailableError,
    ServerStartError,
)
from plugin.server import gpus
from plugin.server.health import (
    EXTERNAL_REFUSED_LIMIT_S,
    ContainerExit,
    HealthPoll,
    auth_headers,
    exit_of,
    exit_state,
    fetch_model_ids,
    fetch_props,
    normalize_base_url,
    poll_health,
    probe_health,
    published_base_url,
)
from plugin.server.images import require_image
from plugin.server.logs import (
    LOG_TAIL_LINES,
    LogPump,
    container_log_tail,
    indent,
    log_excerpt,
    read_log_tail,
)
from plugin.server.spec import (
    ContainerSpec,
    build_container_spec,
    check_model_files,
    tar_archive,
)


@dataclass
class ServerHandle:
    """A healthy llama-server. ``base_url`` is the server root (no ``/v1``) as started;
    ``url`` is where it answers now (a restarted container gets a new host port)."""

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
    #: The server root now: ``base_url``, or where :meth:`relocate` found it since.
    url: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        self.url = self.base_url

    def relocate(self) -> str:
        """Re-read the container's published port (Docker assigns a new one when the
        container restarts) and return the server root; unchanged if unknown."""
        if self.client is not None and self.container_id:
            info = inspect_container(self.client, self.container_id)
            if info is not None:
                self._follow(info)
        return self.url

    def _follow(self, info: Mapping[str, Any]) -> None:
        found = published_base_url(self.profile, info)
        if found:
            self.url = found

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
            info = inspect_container(self.client, self.container_id)  # once: state and port
            if info is None or not info["State"]["Running"]:
                return False
            self._follow(info)
        with httpx.Client(trust_env=not self.container_id, headers=self.headers) as http:
            return probe_health(http, self.url, timeout).healthy

    def is_running(self, timeout: float = 5.0) -> bool:
        """The server process still exists: its container runs (a paused or busy one
        counts), or, for an external server, /health answers."""
        if self.client is not None and self.container_id:
            return container_running(self.client, self.container_id)
        return self.is_alive(timeout)

    def log_tail(self, n: int = LOG_TAIL_LINES) -> str:
        return read_log_tail(self.log_path, n)


@contextmanager
def llama_server(profile: Profile, *, log_path: Path, run_id: str,
                 client: DockerClient | None = None,
                 health_timeout: float | None = None,
                 poll_interval: float = 0.5) -> Iterator[ServerHandle]:
    """A healthy llama-server for ``profile``; the container is removed afterwards, always.

    Raises ModelFileMissingError before touching Docker, ImageMissingError,
    GpuUnavailableError, or ServerStartError (crash or timeout, with the telling log
    lines). BASE_URL profiles: no container, the running server is health-checked and
    described.
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
    pumps: list[LogPump] = []
    try:
        spec = build_container_spec(profile, run_id=run_id)
        require_image(client, profile)
        check_gpus(client, profile, spec, run_id=run_id)
        with managed_container(client, spec.run_kwargs(),
                               refused=lambda exc: _refused(spec, exc)) as managed:
            container = managed.container
            _copy_files(managed, spec)
            _start(container, profile, spec)
            pump = LogPump(container, log_path, secrets=spec.secrets)
            pumps.append(pump)
            managed.before_removal.append(pump.stopping.set)
            pump.start()
            handle = _wait_ready(profile, spec, client, container, log_path,
                                 timeout=timeout, poll_interval=poll_interval)
            managed.graceful = True
            yield handle
    finally:
        for pump in pumps:
            with suppress(RuntimeError):  # Ctrl-C inside pump.start(): not started
                pump.join(timeout=2.0)
        if own_client:
            client.close()


def check_gpus(client: DockerClient, profile: Profile, spec: ContainerSpec, *,
               run_id: str) -> None:
    """The GPU preflight (plugin.server.gpus): raise GpuUnavailableError, naming the profile, the
    GPUs asked for, what the engine has and the fix, before the server container exists."""
    if not spec.device_requests:
        return
    problem = gpus.judge(profile, None, None)  # the profile alone
    engine = probe = None
    if problem is None:
        try:
            info = client.info()
        except (DockerException, OSError) as exc:
            raise DockerUnavailableError(f"GET /info failed: {first_line(exc)}") from None
        engine = gpus.Engine.from_info(info, engine_url(client) or "(default)")
        probe = gpus.run_probe(
            client, profile, spec.device_requests,
            labels=harness_labels(run_id=run_id, role=ROLE_GPU_PROBE, profile=profile.name),
            name=f"{spec.name}-gpu-probe")
        problem = gpus.judge(profile, engine, probe)
    if problem is not None:
        raise GpuUnavailableError(gpus.message(profile, engine, probe, problem))


def _refused(spec: ContainerSpec, exc: APIError) -> ServerStartError:
    if exc.status_code == 409:
        return ServerStartError(
            f"container name {spec.name} is already in use: {exc.explanation}\n"
            f"  fix: another run with the same run id owns it; wait for it, or remove it "
            f"with: docker rm -f {spec.name}")
    return ServerStartError(f"Docker refused to create {spec.name} (image {spec.image}): "
                            f"{exc.explanation}")


def _copy_files(managed: Managed, spec: ContainerSpec) -> None:
    """The API key file, into the created container (in no ``docker inspect`` field)."""
    if not spec.files:
        return
    try:
        if not managed.container.put_archive("/", tar_archive(spec.files)):
            raise APIError("put_archive answered false")
    except (APIError, DockerException) as exc:
        raise ServerStartError(f"could not copy the API key file into {spec.name}: "
                               f"{first_line(exc)}") from None


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
    base_url = published_base_url(profile, info)
    if base_url is None:  # no port binding: the container is already gone
        gone = exit_of(info) or ContainerExit(-1, False, "no host port was published")
        result = HealthPoll(False, 0.0, 0, "nothing polled", gone)
    else:
        result = poll_health(base_url, timeout=timeout, poll_interval=poll_interval,
                              exited=lambda: exit_state(client, container.id),
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
        props=fetch_props(base_url, headers=auth_headers(api_key)), client=client,
        api_key=api_key,
    )


def _start_error(profile: Profile, spec: ContainerSpec, client: DockerClient,
                 container_id: str, log_path: Path, *, url: str, timeout: float,
                 poll_interval: float, result: HealthPoll) -> ServerStartError:
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
    tail = container_log_tail(client, container_id, log_path, secrets=spec.secrets)
    return ServerStartError(
        f"{what}; profile [{profile.name}] ({profile.where()})\n"
        f"  polled: GET {url} every <= {poll_interval:g} s, {result.attempts} attempts in "
        f"{result.elapsed_s:.1f} s; last answer: {result.seen}\n"
        f"  command: llama-server {' '.join(spec.command)}\n"
        f"  log ({log_path}):\n{indent(log_excerpt(tail))}\n"
        f"  fix: {fix}")


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
    result = poll_health(base_url, timeout=health_timeout, poll_interval=poll_interval,
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
        props=fetch_props(base_url, trust_env=True, headers=headers),
        models=fetch_model_ids(base_url, trust_env=True, headers=headers), api_key=api_key,
    )
