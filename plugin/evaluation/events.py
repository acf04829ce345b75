"""The JSON event stream the sandbox writes, read line by line."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Generator, Iterable, Iterator
from typing import Any

from plugin.errors import SandboxError

log = logging.getLogger(__name__)
# The runner sends a heartbeat every 10 s; this much silence means it is stuck.
STALL_TIMEOUT_S = 300.0
Events = Generator[dict[str, Any], None, None]


def expect_done(events: Iterable[dict[str, Any]], what: str) -> None:
    for event in events:
        if event.get("event") == "job_error":
            raise SandboxError(f"{what}: {event.get('task_id')}: {event.get('error')}")


# --------------------------------------------------------------------------------------
# The runner's event stream
# --------------------------------------------------------------------------------------
def read_events(chunks: Iterable[bytes], *, what: str,
            stall_timeout: float = STALL_TIMEOUT_S) -> Iterator[dict[str, Any]]:
    """JSON events from a byte stream, read in a thread so silence can be detected."""
    lines: queue.Queue[bytes | BaseException | None] = queue.Queue()
    thread = threading.Thread(target=_pump, args=(chunks, lines), daemon=True)
    thread.start()
    while True:
        try:
            line = lines.get(timeout=stall_timeout)
        except queue.Empty:
            raise SandboxError(f"{what} sent nothing for {stall_timeout:.0f} s (its "
                               "heartbeat comes every 10 s); it was stopped") from None
        if line is None:
            return
        if isinstance(line, BaseException):
            raise SandboxError(f"{what}: lost its output stream ({line})") from line
        event = _parse_event(line, what)
        if event is not None:
            yield event


def _pump(chunks: Iterable[bytes], lines: queue.Queue[bytes | BaseException | None]) -> None:
    buffer = b""
    try:
        for chunk in chunks:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                lines.put(line)
        if buffer.strip():
            lines.put(buffer)
    except BaseException as exc:  # handed to the consumer thread
        lines.put(exc)
        return
    lines.put(None)


def _parse_event(line: bytes, what: str) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        log.warning("%s: ignoring a non-JSON output line: %.200r", what, line)
        return None
    if not isinstance(event, dict):
        return None
    if event.get("event") == "fatal":
        raise SandboxError(f"{what} failed: {event.get('error')}")
    if event.get("event") == "hello":
        log.info("%s: %s", what, event)
    return event

