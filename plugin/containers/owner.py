"""Is the process that owns a container still alive?"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

from plugin.containers.labels import LABEL_OWNER_HOST, LABEL_OWNER_PID

LEGACY_PID = "bench.pid"


def pid_alive(pid: int) -> bool:
    """A process with this pid exists on this host (perhaps another user's)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_gone(labels: Mapping[str, str]) -> bool:
    """The container was made on this host by a process that no longer runs (or names no
    owner pid). A container of another host is never judged gone: its pids are not ours.
    A container with ``bench.pid`` alone (sandboxes before they carried the owner labels;
    they still carry it) is judged by it and taken to be local."""
    legacy = LEGACY_PID in labels and LABEL_OWNER_PID not in labels
    host = labels.get(LABEL_OWNER_HOST) or (socket.gethostname() if legacy else None)
    if host != socket.gethostname():
        return False
    pid = labels.get(LEGACY_PID if legacy else LABEL_OWNER_PID, "")
    return not (pid.isascii() and pid.isdigit() and pid_alive(int(pid)))
