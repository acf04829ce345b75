"""Containers this process must remove: registered at creation, removed at teardown or exit."""

from __future__ import annotations

import atexit
import os
import signal
import threading
import warnings
from collections.abc import Callable
from types import FrameType
from typing import Any

from plugin.containers.sdk import APIError, DockerClient, DockerException, NotFound

STOP_TIMEOUT_S = 5
_REGISTRY: dict[str, tuple[Any, str]] = {}
_REGISTRY_LOCK = threading.RLock()  # re-entrant: the SIGTERM handler may run mid-update
_hooks = {"atexit": False, "sigterm": False}


def register_cleanup(client: DockerClient, container_id: str, name: str) -> None:
    """Have :func:`cleanup_all` remove this container at exit or on SIGTERM unless
    :func:`unregister_cleanup` is called first."""
    _install_exit_hooks()
    with _REGISTRY_LOCK:
        _REGISTRY[container_id] = (client, name)


def unregister_cleanup(container_id: str) -> None:
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
        if remove_container(client, container_id, name, graceful=False):
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


def remove_container(client: DockerClient, container_id: str, name: str, *,
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
