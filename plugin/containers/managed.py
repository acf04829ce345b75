"""One container's life, for every container the harness creates (llama-server, GPU
probe, sandbox): created, registered for removal, always removed.

Registered means three nets: :func:`plugin.containers.registry.cleanup_all` at exit and on
SIGTERM; the process's watchdog (:mod:`plugin.containers.watchdog`) if it is killed; and
the next session's reaper. Interrupted half-way through creation (Ctrl-C, a
pytest-timeout signal), the container may exist without its id being known: it is removed
by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from plugin.containers import watchdog
from plugin.containers.registry import register_cleanup, remove_container, unregister_cleanup
from plugin.containers.sdk import APIError, DockerClient


@dataclass
class Managed:
    """The created container; what its removal does is set by its user."""

    client: DockerClient
    container: Any
    name: str
    #: Stop before removing (a server that was healthy shuts down cleanly); else force.
    graceful: bool = False
    #: Called just before the removal (e.g. to tell a log follower that the end is near).
    before_removal: list[Callable[[], None]] = field(default_factory=list)

    def remove(self) -> None:
        for call in self.before_removal:
            call()
        if remove_container(self.client, self.container.id, self.name, graceful=self.graceful):
            unregister_cleanup(self.container.id)  # else cleanup_all retries at exit


@contextmanager
def managed_container(client: DockerClient, create: Mapping[str, Any], *,
                      refused: Callable[[APIError], BaseException] | None = None
                      ) -> Iterator[Managed]:
    """``client.containers.create(**create)``, registered; removed when the block ends.

    ``refused`` turns Docker's refusal to create (nothing was created) into the caller's
    error; without it the APIError propagates.
    """
    watchdog.watch(client)
    name = create.get("name")
    try:
        container = client.containers.create(**create)
        register_cleanup(client, container.id, container.name)
    except APIError as exc:
        if refused is not None:
            raise refused(exc) from None
        raise
    except BaseException:
        if name:
            remove_container(client, name, name, graceful=False)
        raise
    managed = Managed(client, container, container.name)
    try:
        yield managed
    finally:
        managed.remove()
