"""Remove the containers of runs whose owner died without cleaning up, at session start.

Every harness container (llama-server, GPU probe, sandbox) carries owner labels
(:mod:`plugin.containers.labels`); one whose owner process on this host is gone is
removed. The owner's watchdog (:mod:`plugin.containers.watchdog`) does the same at once;
this sweep catches what a watchdog could not (an engine that was down meanwhile).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, cast

from plugin.containers.client import docker_client
from plugin.containers.labels import HARNESS_NAME, LABEL_HARNESS, LABEL_ROLE, ROLE_SANDBOX
from plugin.containers.owner import owner_gone
from plugin.containers.registry import remove_container
from plugin.containers.sdk import DockerClient, DockerException
from plugin.errors import DockerUnavailableError


def reap_stale_containers(client: DockerClient, *, older_than_s: float = 0,
                          roles: dict[str, str] | None = None) -> list[str]:
    """Remove harness containers of this host whose owner process is dead; their names
    (``roles``, when given, gets name -> role).

    Containers of other hosts, of live processes, or younger than ``older_than_s`` stay.
    """
    found = client.api.containers(all=True,
                                  filters={"label": f"{LABEL_HARNESS}={HARNESS_NAME}"})
    reaped: list[str] = []
    for entry in cast(list[dict[str, Any]], found):
        labels = entry.get("Labels") or {}
        if not owner_gone(labels):
            continue
        if time.time() - float(entry.get("Created", 0)) < older_than_s:
            continue
        name = (entry.get("Names") or ["/" + entry["Id"][:12]])[0].lstrip("/")
        if remove_container(client, entry["Id"], name, graceful=False):
            reaped.append(name)
            if roles is not None:
                roles[name] = labels.get(LABEL_ROLE, "")
    return reaped


def reap_engines(hosts: Iterable[str | None], *, timeout: int = 5) -> list[str]:
    """:func:`reap_stale_containers` on each engine (None: DOCKER_HOST or the local socket);
    what was removed: the names, with sandboxes (whose names Docker made up) counted as
    "N sandbox container(s)". Engines that do not answer within ``timeout`` s are skipped."""
    reaped: list[str] = []
    roles: dict[str, str] = {}
    for host in dict.fromkeys(host or None for host in hosts):
        try:
            client = docker_client(host, timeout=timeout)
        except DockerUnavailableError:
            continue
        try:
            reaped += reap_stale_containers(client, roles=roles)
        except (DockerException, OSError):
            pass  # the engine went away meanwhile: nothing to do now
        finally:
            client.close()
    sandboxes = sum(1 for name in reaped if roles.get(name) == ROLE_SANDBOX)
    return [name for name in reaped if roles.get(name) != ROLE_SANDBOX] + (
        [f"{sandboxes} sandbox container(s)"] if sandboxes else [])
