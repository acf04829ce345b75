"""Is a llama-server up? /health polling, /props and /v1/models."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from plugin.config.profile import Profile
from plugin.containers.client import remote_hostname
from plugin.containers.sdk import DockerClient, NotFound
from plugin.server.spec import CONTAINER_PORT, engine_host

# A BASE_URL server that refuses connections this long is not starting, it is not there
# (a loading llama-server already accepts connections and answers 503).
EXTERNAL_REFUSED_LIMIT_S = 30.0


def auth_headers(api_key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


@dataclass(frozen=True)
class _Probe:
    healthy: bool
    seen: str  # what the last request returned, for error messages


@dataclass(frozen=True)
class ContainerExit:
    code: int
    oom_killed: bool
    error: str

    def describe(self) -> str:
        text = f"exited with code {self.code}"
        if self.oom_killed:
            text += " (killed: out of memory)"
        return f"{text} ({self.error})" if self.error else text


@dataclass(frozen=True)
class HealthPoll:
    healthy: bool
    elapsed_s: float
    attempts: int
    seen: str
    exited: ContainerExit | None = None
    refused_s: float = 0.0  # how long the last run of refused connections lasted


def probe_health(http: httpx.Client, base_url: str, timeout: float,
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


def poll_health(base_url: str, *, timeout: float, poll_interval: float,
                 exited: Callable[[], ContainerExit | None], trust_env: bool = False,
                 fallback: str | None = None, headers: Mapping[str, str] | None = None,
                 refused_limit_s: float | None = None) -> HealthPoll:
    """Poll until 200, the container exits, ``timeout`` seconds pass, or (with
    ``refused_limit_s``) connections have been refused that long in a row."""
    start = time.monotonic()
    delay = min(0.05, poll_interval)
    attempts = 0
    refused_since: float | None = None
    with httpx.Client(trust_env=trust_env, headers=dict(headers or {})) as http:
        while True:
            remaining = timeout - (time.monotonic() - start)
            probe = probe_health(http, base_url, min(5.0, max(0.1, remaining)), fallback)
            attempts += 1
            now = time.monotonic()
            elapsed = now - start
            if probe.healthy:
                return HealthPoll(True, elapsed, attempts, probe.seen)
            refused = probe.seen.startswith("ConnectError")
            refused_since = (refused_since or now) if refused else None
            refused_s = now - refused_since if refused_since is not None else 0.0
            if refused_limit_s is not None and refused_s >= refused_limit_s:
                return HealthPoll(False, elapsed, attempts, probe.seen, refused_s=refused_s)
            gone = exited()
            if gone is not None or elapsed >= timeout:
                return HealthPoll(False, elapsed, attempts, probe.seen, gone)
            time.sleep(min(delay, timeout - elapsed))
            delay = min(delay * 2, poll_interval)


def fetch_props(base_url: str, *, trust_env: bool = False,
                 headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """GET /props (build_info, model_path, chat_template, ...); {} if not offered."""
    try:
        response = httpx.get(f"{base_url}/props", timeout=10.0, trust_env=trust_env,
                             headers=dict(headers or {}))
        data = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def fetch_model_ids(base_url: str, *, trust_env: bool = False,
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


def exit_state(client: DockerClient, container_id: str) -> ContainerExit | None:
    try:
        return exit_of(client.api.inspect_container(container_id))
    except NotFound:
        return ContainerExit(-1, False, "the container was removed from outside")


def exit_of(info: Mapping[str, Any]) -> ContainerExit | None:
    state = info["State"]
    if state.get("Status") not in ("exited", "dead"):
        return None
    return ContainerExit(int(state.get("ExitCode", -1)), bool(state.get("OOMKilled")),
                 str(state.get("Error") or ""))


def published_base_url(profile: Profile, info: Mapping[str, Any],
              container_port: int = CONTAINER_PORT) -> str | None:
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(f"{container_port}/tcp") or []:
        if binding.get("HostPort"):
            host = remote_hostname(engine_host(profile)) or "127.0.0.1"
            host = f"[{host}]" if ":" in host else host
            return f"http://{host}:{binding['HostPort']}"
    return None


def normalize_base_url(url: str) -> str:
    """Server root: no trailing slash and no ``/v1`` (llama-server's /health is at the root)."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")
