"""The Docker client: the one place that connects to an engine, and facts about it."""

from __future__ import annotations

import os
from typing import Any, cast
from urllib.parse import urlsplit

from plugin.containers.sdk import DockerClient, DockerException
from plugin.errors import DockerUnavailableError

_REMOTE_SCHEMES = ("tcp", "ssh", "http", "https")


def docker_client(host: str | None = None, *, timeout: int = 60,
                  fix: str = "") -> DockerClient:
    """A client for ``host`` (``unix://``, ``tcp://``, ``ssh://``) or DOCKER_HOST / default.

    Raises DockerUnavailableError naming the engine and how to make it reachable
    (``fix``: a further way out, said after the usual ones).
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
            + (f"; {fix}" if fix else "")) from None
    return client


def remote_hostname(docker_host: str | None) -> str | None:
    """Host name of a tcp:// or ssh:// engine (where published ports live), else None."""
    if not docker_host:
        return None
    parts = urlsplit(docker_host)
    return parts.hostname if parts.scheme in _REMOTE_SCHEMES else None


def inspect_container(client: DockerClient, container_id: str) -> dict[str, Any] | None:
    try:
        return cast(dict[str, Any], client.api.inspect_container(container_id))
    except (DockerException, OSError):
        return None


def container_running(client: DockerClient, container_id: str) -> bool:
    info = inspect_container(client, container_id)
    return bool(info and info["State"]["Running"])


def first_line(exc: BaseException) -> str:
    """The first line of a Docker error's explanation (or of any exception)."""
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def engine_url(client: DockerClient) -> str | None:
    """The URL of the engine ``client`` talks to (None: DOCKER_HOST or the default)."""
    api = client.api
    base = str(api.base_url)
    adapter = getattr(api, "_custom_adapter", None)
    if base.startswith("http+docker://ssh"):
        host = getattr(adapter, "ssh_host", None)
        return f"ssh://{host}" if host else None
    if base.startswith("http+docker://"):  # a unix socket
        path = getattr(adapter, "socket_path", None)
        return f"unix://{path}" if path else None
    if base.startswith(("http://", "https://")):
        return "tcp://" + base.split("://", 1)[1]
    return None
