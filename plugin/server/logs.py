"""llama-server's log: streamed to a file across restarts, secrets redacted, excerpts for errors."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from plugin.containers.sdk import DockerClient, DockerException

REDACTED = "***"
LOG_TAIL_LINES = 40
LOG_EXCERPT_LINES = 4  # log lines quoted in an error message
_TAIL_BYTES = 256 * 1024


def redact(data: bytes, secrets: Iterable[str]) -> bytes:
    """``data`` with every secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            data = data.replace(secret.encode(), REDACTED.encode())
    return data


def read_log_tail(path: Path, n: int = LOG_TAIL_LINES) -> str:
    """Last ``n`` lines of a (possibly large, still growing) log file; "" if absent."""
    try:
        with path.open("rb") as fh:
            end = fh.seek(0, os.SEEK_END)
            fh.seek(max(0, end - _TAIL_BYTES))
            data = fh.read()
    except FileNotFoundError:
        return ""
    lines = data.decode("utf-8", "replace").splitlines()
    return "\n".join(lines[-n:]) if n > 0 else ""


class LogPump(threading.Thread):
    """Follow the container's output into ``path`` so the log survives a crash of ours;
    across a restart of the container (``docker restart``, a restart policy) too."""

    #: A line longer than this is written in pieces (a secret cut in two may then show).
    MAX_PENDING = 64 * 1024
    #: After its output ends, the container is watched this long for a restart.
    RESTART_WAIT_S = 30.0

    def __init__(self, container: Any, path: Path, secrets: Iterable[str] = ()) -> None:
        super().__init__(name=f"log-{container.name}", daemon=True)
        self.container = container
        self.path = path
        self.secrets = tuple(s for s in secrets if s)
        self.stopping = threading.Event()  # set by the teardown: no restart to wait for
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")

    def run(self) -> None:
        since: float | None = None
        with self.path.open("ab") as fh:
            while True:
                ended = self._follow(fh, since)
                if self.stopping.is_set() or not self._restarted():
                    return
                fh.write(b"[container restarted: its log goes on]\n")
                fh.flush()
                since = ended

    def _follow(self, fh: Any, since: float | None) -> float:
        """Copy the output until it ends; the time it ended (the next ``since``)."""
        pending = b""  # whole lines are redacted, so a secret split by chunking still goes
        kwargs = {"since": since} if since is not None else {}
        try:
            for chunk in self.container.logs(stream=True, follow=True, **kwargs):
                pending += chunk
                cut = pending.rfind(b"\n") + 1
                if not cut and len(pending) > self.MAX_PENDING:
                    cut = len(pending)
                if cut:
                    fh.write(redact(pending[:cut], self.secrets))
                    fh.flush()
                    pending = pending[cut:]
        except Exception as exc:  # the stream breaks when the container goes away
            fh.write(redact(pending, self.secrets))
            pending = b""
            if not self.stopping.is_set():
                fh.write(f"\n[log stream ended: {type(exc).__name__}: {exc}]\n".encode())
        fh.write(redact(pending, self.secrets))
        fh.flush()
        return time.time()

    def _restarted(self) -> bool:
        """Whether the container runs again within RESTART_WAIT_S (False once removed)."""
        deadline = time.monotonic() + self.RESTART_WAIT_S
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                self.container.reload()
            except Exception:  # removed, or the engine is gone: nothing more to follow
                return False
            if self.container.status == "running":
                return True
            self.stopping.wait(0.2)
        return False


#: Log lines that say why a server stopped or never got ready.
_TELLING = re.compile(r"error|fail|abort|exception|terminate|unable|cannot|could not|"
                      r"invalid|unknown|out of memory|not found|no such|denied|killed",
                      re.IGNORECASE)


def log_excerpt(tail: str, n: int = LOG_EXCERPT_LINES) -> str:
    """The last ``n`` lines of ``tail`` that tell of an error, else its last ``n`` lines
    (an error message shows these few lines; the whole log is in the file it names)."""
    lines = [line for line in tail.splitlines() if line.strip()]
    telling = [line for line in lines if _TELLING.search(line)]
    return "\n".join((telling or lines)[-n:])


def container_log_tail(client: DockerClient, container_id: str, log_path: Path,
                        n: int = LOG_TAIL_LINES, secrets: Iterable[str] = ()) -> str:
    try:
        data = redact(cast(bytes, client.api.logs(container_id, stdout=True, stderr=True,
                                                  tail=n)), secrets)
    except (DockerException, OSError):
        return read_log_tail(log_path, n)  # written redacted by LogPump
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-n:])


def indent(text: str, prefix: str = "    | ") -> str:
    return "\n".join(prefix + line for line in text.splitlines()) or f"{prefix}(empty)"
