"""x"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterable
from typing import Any, cast

from docker.client import DockerClient  # submodule: ./docker/ shadows the SDK for mypy
from docker.errors import DockerException

from plugin.containers.client import docker_client, docker_client_from_env
from plugin.containers.labels import (
    HARNESS_NAME,
    LABEL_HARNESS,
    LABEL_OWNER_HOST,
    LABEL_OWNER_PID,
    LABELS,
)
from plugin.containers.owner import owner_alive, pid_alive
from plugin.containers.registry import remove_container
from plugin.errors import (
    DockerUnavailableError,
)


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
        if labels.get(LABEL_OWNER_HOST) != host or owner_alive(labels.get(LABEL_OWNER_PID)):
            continue
        if time.time() - float(entry.get("Created", 0)) < older_than_s:
            continue
        name = (entry.get("Names") or ["/" + entry["Id"][:12]])[0].lstrip("/")
        if remove_container(client, entry["Id"], name, graceful=False):
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


def reap_sandbox_containers(client: Any = None, *, only_orphans: bool = True) -> int:
    """Remove sandbox containers left by killed runs (e.g. pytest-timeout's thread method).

    With ``only_orphans`` only containers of this host whose creating process (label
    ``bench.pid``) is gone are removed, so concurrent runs (xdist workers, other hosts
    sharing the engine) keep theirs.
    """
    client = client if client is not None else docker_client_from_env()
    filters = {"label": [f"{k}={v}" for k, v in LABELS.items()]}
    removed = 0
    host = socket.gethostname()
    for container in client.containers.list(all=True, filters=filters):
        pid = container.labels.get("bench.pid", "")
        if only_orphans and container.labels.get(LABEL_OWNER_HOST, host) != host:
            continue
        if only_orphans and pid.isdigit() and pid_alive(int(pid)):
            continue
        with contextlib.suppress(Exception):
            container.remove(force=True)
            removed += 1
    return removed
