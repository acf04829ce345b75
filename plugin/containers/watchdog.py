"""A watchdog that removes a process's containers once that process is dead, however it died.

``finally`` blocks, fixture teardown, ``atexit`` and the SIGTERM handler
(plugin.containers.registry) clean up after every ending Python gets to see. Some it
does not see: pytest-timeout's ``thread`` method (``os._exit``), SIGKILL, the OOM killer.
For those, the first container this process creates on an engine (a llama-server or a
sandbox) starts, once per process and engine, a small detached helper in the spirit
of Testcontainers' Ryuk::

    python -m plugin.containers.watchdog --pid <owner pid> --owner-host <host name> \
        [--docker-host URL]

It checks that the engine answers (if not, it exits at once: code 3), waits for the owner
to exit (a pidfd on Linux, so no polling; elsewhere a check every 0.5 s), then removes the
harness containers labelled ``bench.owner_pid=<pid>`` and ``bench.owner_host=<host>`` on
that engine, sweeps once more a few seconds later (for a create that was in flight), and
exits. It never removes anything while its owner lives, nor when the pid was taken over
by another process meanwhile. It runs niced, in its own session (a Ctrl-C to the owner's
terminal does not reach it), with no pipe or folder of its owner held open; while it
waits it is one blocked process.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from docker.client import DockerClient  # submodule: ./docker/ shadows the SDK for mypy
from docker.errors import DockerException

from plugin.containers.client import docker_client, engine_url
from plugin.containers.labels import HARNESS_NAME, LABEL_HARNESS, LABEL_OWNER_HOST, LABEL_OWNER_PID
from plugin.containers.owner import pid_alive
from plugin.containers.registry import remove_container
from plugin.errors import DockerUnavailableError

EXIT_NO_ENGINE = 3
SECOND_SWEEP_AFTER_S = 3.0
POLL_S = 0.5
CONNECT_TIMEOUT_S = 10
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding plugin/
_spawned: dict[tuple[int, str | None], subprocess.Popen[bytes] | None] = {}
_spawn_lock = threading.Lock()


def watch(client: Any) -> None:
    """Make sure a reaper watches this process on ``client``'s engine (idempotent, cheap).

    Call it before creating a container. Clients that are not Docker SDK clients (test
    doubles) are ignored; a reaper that cannot be started only costs the safety net (the
    next session's reaping still applies).
    """
    if not isinstance(client, DockerClient):
        return
    engine = engine_url(client)
    key = (os.getpid(), engine)
    with _spawn_lock:
        if key not in _spawned:
            _spawned[key] = _spawn(engine)


def _spawn(engine: str | None) -> subprocess.Popen[bytes] | None:
    command = [sys.executable, "-m", "plugin.containers.watchdog", "--pid", str(os.getpid()),
               "--owner-host", socket.gethostname()]
    if engine:
        command += ["--docker-host", engine]
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(_PACKAGE_ROOT), *([path] if path else [])])}
    try:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd="/", env=env,
                                start_new_session=True)
    except OSError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    with contextlib.suppress(OSError):
        os.nice(10)

    try:
        docker_client(args.docker_host, timeout=CONNECT_TIMEOUT_S).close()
    except DockerUnavailableError:
        return EXIT_NO_ENGINE
    started = start_time(args.pid)
    if started is not None:
        wait_for_exit(args.pid, started)
    for delay in (0.0, SECOND_SWEEP_AFTER_S):
        time.sleep(delay)
        if start_time(args.pid) is not None:
            return 0  # alive, or the pid now belongs to another process: not ours to clean
        with contextlib.suppress(DockerUnavailableError, DockerException, OSError):
            client = docker_client(args.docker_host, timeout=CONNECT_TIMEOUT_S)
            try:
                sweep(client, args.pid, args.owner_host)
            finally:
                client.close()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m plugin.containers.watchdog",
        description="remove the harness containers of a process once it has exited")
    parser.add_argument("--pid", type=int, required=True, help="the owner process")
    parser.add_argument("--owner-host", default=socket.gethostname(),
                        help="its host name (label bench.owner_host; default: this host)")
    parser.add_argument("--docker-host", help="the engine (default: DOCKER_HOST or local)")
    return parser


def start_time(pid: int) -> str | None:
    """Start time of a running process (clock ticks since boot); None when there is no
    such process or it has exited (a zombie). Without /proc: "?" while it exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None

        return "?" if pid_alive(pid) else None
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the name in (...) may hold spaces
    return None if fields[0] in ("Z", "X") else fields[19]


def wait_for_exit(pid: int, started: str) -> None:
    """Return once the process ``pid`` that started at ``started`` has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except (AttributeError, OSError):  # no pidfd here: poll
        while start_time(pid) == started:
            time.sleep(POLL_S)
        return
    try:
        if start_time(pid) == started:  # else it died before the pidfd was opened
            select.select([fd], [], [])
    finally:
        os.close(fd)


def sweep(client: DockerClient, pid: int, owner_host: str) -> list[str]:
    """Force-remove the harness containers of ``pid`` on ``owner_host``; their names."""

    labels = [f"{LABEL_HARNESS}={HARNESS_NAME}", f"{LABEL_OWNER_PID}={pid}",
              f"{LABEL_OWNER_HOST}={owner_host}"]
    removed = []
    for entry in client.api.containers(all=True, filters={"label": labels}):
        name = (entry.get("Names") or ["/" + entry["Id"][:12]])[0].lstrip("/")
        if remove_container(client, entry["Id"], name, graceful=False):
            removed.append(name)
    return removed


if __name__ == "__main__":
    sys.exit(main())
