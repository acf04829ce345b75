"""Process hygiene inside the sandbox: keep untrusted code away from the result channel.

These are defences in depth *inside* the container (the container itself is the sandbox):

* the runner and its workers are made non-dumpable, so code running as the same user cannot
  open ``/proc/<pid>/fd/*`` of the runner (its stdout carries the verdicts);
* each worker is a child subreaper, so anything a solution leaves behind (daemonized
  children, fork bombs) is re-parented to the worker, which kills it after every task;
* workers point stdin/stdout/stderr at /dev/null before any untrusted code runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import time
from collections.abc import Collection

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
_libc: ctypes.CDLL | None = None


def _prctl(option: int, value: int) -> bool:
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        return int(_libc.prctl(option, value, 0, 0, 0)) == 0
    except (OSError, AttributeError):  # not Linux
        return False


def make_undumpable() -> bool:
    return _prctl(PR_SET_DUMPABLE, 0)


def become_subreaper() -> bool:
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def silence_stdio() -> None:
    """Point fds 0, 1, 2 at /dev/null (untrusted children inherit these)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _stat_fields(pid: int | str) -> list[bytes]:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...);
    [] if the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return []
    return stat[stat.rfind(b")") + 2:].split()


def _stat(pid: str) -> tuple[int, int] | None:
    """(parent pid, process group) of ``pid`` from /proc, or None if it is gone."""
    fields = _stat_fields(pid)
    return (int(fields[1]), int(fields[2])) if len(fields) >= 3 else None


def process_state(pid: int) -> str | None:
    """State letter of ``pid`` from /proc (R, S, D, T stopped, Z...), or None if gone."""
    fields = _stat_fields(pid)
    return fields[0].decode() if fields else None


def children_of(pid: int) -> dict[int, int]:
    """{child pid: its process group} for the children of ``pid`` (scans /proc)."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            info = _stat(name)
            if info is not None and info[0] == pid:
                found[int(name)] = info[1]
    return found


def kill_children(exclude: Collection[int] = (), rounds: int = 200) -> int:
    """SIGKILL every child of this process (we are a subreaper, so orphaned descendants
    become children) and every process group they lead, until none is left.

    Killing whole groups is what stops a fork bomb: killpg() reaches every member at once,
    so survivors cannot refill the freed pids. Returns how many processes were killed.
    """
    me, my_group = os.getpid(), os.getpgrp()
    killed = 0
    for _ in range(rounds):
        kids = {pid: group for pid, group in children_of(me).items() if pid not in exclude}
        if not kids:
            break
        for group in set(kids.values()) - {my_group, 0, 1}:
            try:
                os.killpg(group, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in kids:
            reap_child(pid)
        killed += len(kids)
    return killed


def kill_descendants() -> int:
    """Kill everything this worker's last test left behind; returns how many."""
    return kill_children()


def reap_child(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done or time.monotonic() > deadline:
            return
        time.sleep(0.001)


def ignore_termination_signals() -> None:
    """The runner is PID 1 in the container: only the host may stop it (docker kill)."""
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)
