"""A llama-server that starts only when a request must really be sent, one profile per GPU.

An unchanged profile re-run has every completion stored under its fingerprint, and for
container profiles the fingerprint is known without the server (model file identity,
image id, arguments), so a big model's minutes of loading are skipped entirely.

Before a GPU profile's container starts, :func:`gpu_locks` takes a file lock per GPU id it
uses (``GPUS`` / ``-ot ...=CUDAn``), so xdist workers and concurrent runs on this machine
never load two models onto one GPU. Lock files live in ``<lock dir>/<engine>/``: one
folder per Docker engine (profiles on different hosts run at the same time):

* ``gpu-<id>.lock``: held while a server that uses GPU ``<id>`` runs;
* ``gpus-all.lock``: the gate. A profile with ids takes it only for the moment it needs
  to grab its ids (all of them or none, so two profiles never deadlock); a ``GPUS=all``
  profile holds it for its whole run and also waits for every ``gpu-<id>.lock`` that
  exists, so "all" and any single GPU never run together, without knowing the GPU count.

CPU-only and BASE_URL profiles take no lock. Locks are released when the server is torn
down, at once when its start fails, and by the kernel when the process dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from filelock import FileLock, Timeout

from plugin.config.profile import Profile
from plugin.errors import ServerStartError
from plugin.server.lifecycle import ServerHandle, llama_server
from plugin.server.logs import read_log_tail
from plugin.server.spec import engine_host

DEFAULT_LOCK_DIR = Path("/tmp/llama-bench-locks")
ALL_GPUS_LOCK = "gpus-all.lock"
POLL_S = 0.5
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

log = logging.getLogger(__name__)


class LazyServer:
    """Starts the profile's server on first :meth:`get`; :meth:`close` tears it down."""

    lock_poll_s = POLL_S  # how often a waiting GPU lock is retried

    def __init__(self, profile: Profile, *, log_path: Path, run_id: str,
                 client: Any | None = None, lock_dir: Path | None = None,
                 latest_log: Path | None = None) -> None:
        self.profile = profile
        self.log_path = log_path
        #: A symlink that is pointed at ``log_path`` when this server starts (the last
        #: started server's log, easy to find).
        self.latest_log = latest_log
        self.run_id = run_id
        self.client = client
        self.lock_dir = lock_dir or DEFAULT_LOCK_DIR
        self.lock_wait_s = 0.0  # time spent waiting for GPU locks
        self._stack = contextlib.ExitStack()
        self._handle: ServerHandle | None = None
        self._error: BaseException | None = None

    @property
    def started(self) -> bool:
        return self._handle is not None

    def get(self) -> ServerHandle:
        """The healthy server, started now if needed (a failed start is not retried)."""
        if self._error is not None:
            raise self._earlier_error()
        if self._handle is None:
            try:
                self._lock_gpus()
                self._point_latest_log()
                self._handle = self._stack.enter_context(self._start())
            except BaseException as exc:
                self._error = exc
                self._stack.close()  # a failed start frees its GPUs at once
                raise
        return self._handle

    def _earlier_error(self) -> BaseException:
        """The first start's error; an abort (a pytest-timeout ``Failed``) becomes a
        ServerStartError, so the profile's later tests error instead of timing out."""
        error = cast(BaseException, self._error)
        if isinstance(error, (Exception, KeyboardInterrupt, SystemExit)):
            return error
        aborted = ServerStartError(
            f"the start of [{self.profile.name}]'s llama-server was aborted in an earlier "
            f"test ({type(error).__name__}: {str(error).strip()}); it is not retried "
            f"(full log: {self.log_path})")
        aborted.__cause__ = error
        return aborted

    def _start(self) -> contextlib.AbstractContextManager[ServerHandle]:
        """The server's lifecycle (a context manager); the GPU locks are already held."""
        return llama_server(self.profile, log_path=self.log_path, run_id=self.run_id,
                            client=self.client)

    def _point_latest_log(self) -> None:
        if self.latest_log is None:
            return
        link = self.latest_log
        temporary = link.with_name(f".{link.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            link.parent.mkdir(parents=True, exist_ok=True)
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(os.path.relpath(self.log_path, link.parent))
            os.replace(temporary, link)

    def _lock_gpus(self) -> None:
        if self.profile.base_url or not self.profile.gpus:
            return
        directory = self.lock_dir / engine_key(self.client, engine_host(self.profile))
        started = time.monotonic()
        try:
            self._stack.enter_context(gpu_locks(self.profile.gpus, directory,
                                                poll_s=self.lock_poll_s,
                                                on_wait=self._waiting))
        except OSError as exc:
            raise ServerStartError(
                f"cannot take the GPU locks of [{self.profile.name}] in {directory}: {exc}\n"
                "  fix: make that folder writable for this user, or pass --bench-lock-dir "
                "DIR (BENCH_LOCK_DIR) with a folder every run on this machine can write"
            ) from None
        self.lock_wait_s = time.monotonic() - started

    def _waiting(self, lock: Path) -> None:
        log.warning("[%s] waiting for %s: another profile or run uses that GPU",
                    self.profile.name, lock)

    def image_id(self) -> str | None:
        """Id of the profile's image on the engine, without starting anything."""
        if self.profile.base_url or self.client is None:
            return None
        try:
            return str(self.client.images.get(self.profile.image).id)
        except Exception:  # no image: the start will say so, with the fix
            return None

    def log_tail(self, n: int = 40) -> str:
        return read_log_tail(self.log_path, n)

    def close(self) -> None:
        """Tear the server down, then release its GPU locks; idempotent."""
        try:
            self._stack.close()
        finally:
            self._handle = None


# --------------------------------------------------------------------------- GPU locks


def engine_key(client: Any | None, docker_host: str | None) -> str:
    """Folder name of an engine's locks: the same engine gets the same key whatever URL
    reaches it (engine id, host name and data root from ``docker info``); without an
    answer, the host URL itself."""
    info: dict[str, Any] = {}
    if client is not None:
        with contextlib.suppress(Exception):
            info = dict(client.info())
    if info.get("ID") or info.get("DockerRootDir"):
        ident = f"{info.get('ID')}|{info.get('Name')}|{info.get('DockerRootDir')}"
        digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
        return f"{_safe(str(info.get('Name') or 'engine'))}-{digest}"
    return "host-" + _safe(docker_host or "local")


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "_"


@contextlib.contextmanager
def gpu_locks(gpus: tuple[str, ...], directory: Path, *, poll_s: float = POLL_S,
              on_wait: Callable[[Path], None] | None = None) -> Iterator[list[Path]]:
    """Hold the locks of ``gpus`` (ids, or ``("all",)``) in ``directory``; yields the
    paths held. Waits as long as it takes (interruptible every ``poll_s``)."""
    directory.mkdir(parents=True, exist_ok=True)
    notify = _once(on_wait)
    if "all" in gpus:
        held = _lock_everything(directory, poll_s, notify)
    else:
        held = _lock_ids(sorted(set(gpus), key=_id_order), directory, poll_s, notify)
    try:
        yield [Path(lock.lock_file) for lock in held]
    finally:
        _release(held)


def _id_order(gpu: str) -> tuple[int, str]:
    return (int(gpu), gpu) if gpu.isdigit() else (1 << 30, gpu)


def _lock_ids(ids: list[str], directory: Path, poll_s: float,
              notify: Callable[[Path], None]) -> list[FileLock]:
    """Every id at once or none: try them under the gate, else let go and retry."""
    gate = FileLock(str(directory / ALL_GPUS_LOCK))
    while True:
        _wait_for(gate, poll_s, notify)
        try:
            held, busy = _try_all([FileLock(str(directory / f"gpu-{i}.lock")) for i in ids])
        finally:
            gate.release()
        if busy is None:
            return held
        notify(Path(busy.lock_file))
        time.sleep(poll_s)


def _try_all(locks: list[FileLock]) -> tuple[list[FileLock], FileLock | None]:
    """(held, None) when every lock was free; else ([], the first busy one)."""
    held: list[FileLock] = []
    try:
        for lock in locks:
            try:
                lock.acquire(timeout=0)
            except Timeout:
                _release(held)
                return [], lock
            held.append(lock)
    except BaseException:
        _release(held)
        raise
    return held, None


def _lock_everything(directory: Path, poll_s: float,
                     notify: Callable[[Path], None]) -> list[FileLock]:
    """The gate (no new id can start), then every id lock in use or ever used."""
    held: list[FileLock] = []
    try:
        gate = FileLock(str(directory / ALL_GPUS_LOCK))
        _wait_for(gate, poll_s, notify)
        held.append(gate)
        for path in sorted(directory.glob("gpu-*.lock")):
            lock = FileLock(str(path))
            _wait_for(lock, poll_s, notify)
            held.append(lock)
    except BaseException:
        _release(held)
        raise
    return held


def _wait_for(lock: FileLock, poll_s: float, notify: Callable[[Path], None]) -> None:
    """Acquire, polling: a finite timeout keeps Ctrl-C working (and filelock >= 4 refuses
    an endless wait for a lock another instance of this process holds)."""
    while True:
        try:
            lock.acquire(timeout=poll_s)
            return
        except Timeout:
            notify(Path(lock.lock_file))


def _release(locks: list[FileLock]) -> None:
    for lock in reversed(locks):
        with contextlib.suppress(Exception):
            lock.release()


def _once(callback: Callable[[Path], None] | None) -> Callable[[Path], None]:
    seen: set[Path] = set()

    def notify(path: Path) -> None:
        if callback is not None and path not in seen:
            seen.add(path)
            callback(path)

    return notify
