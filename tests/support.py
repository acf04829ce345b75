"""Helpers shared by several test modules (imported as ``support``: pytest puts tests/ on
sys.path, as the folder has no __init__.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from docker.client import DockerClient


def metric(base_url: str, name: str) -> float:
    """One value of llama-server's /metrics (needs ``--metrics``)."""
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics:\n{text[:500]}")


def prompt_tokens_total(base_url: str) -> float:
    """Grows by each request's prompt when cache_prompt is off: a server-side request count."""
    return metric(base_url, "llamacpp:prompt_tokens_total")


def junit_outcomes(path: Path) -> dict[str, tuple[str, str]]:
    """test name -> (passed|failed|error|skipped, message + text), in run order."""
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kind, text = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                kind, text = child.tag, f"{child.get('message', '')}\n{child.text or ''}"
        outcomes[str(case.get("name"))] = (kind, text)
    return outcomes


def wait_until(condition: Callable[[], Any], what: str, proc: subprocess.Popen[str],
               timeout: float = 60, poll_s: float = 0.1) -> Any:
    """``condition()``'s first true value; fails with the process's output if the process
    ends first or ``timeout`` passes (the process group is killed then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"pytest ended before {what}:\n{proc.communicate()[0]}")
        time.sleep(poll_s)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    raise AssertionError(f"timed out waiting for {what}:\n{proc.communicate()[0]}")


def last_lines(output: str, n: int = 60) -> str:
    """The end of a run's output, where an uncaught traceback's final exception is (a
    failure message keeps it when a long output is cut in the middle)."""
    lines = output.splitlines()
    cut = f"[... {len(lines) - n} lines above ...]\n" if len(lines) > n else ""
    return cut + "\n".join(lines[-n:])


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> str:
    """The process's output once it ends; its group is killed if it does not in time."""
    try:
        return proc.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"pytest did not end:\n{proc.communicate()[0]}") from None


def server_loading(client: DockerClient, run_id: str) -> bool:
    """The run's server container runs and its /health says it is still loading (503)."""
    for container in client.containers.list(filters={"label": f"bench.run_id={run_id}"},
                                            ignore_removed=True):
        ports = container.attrs["NetworkSettings"]["Ports"].get("8080/tcp") or []
        if not ports:
            continue
        try:
            answer = httpx.get(f"http://127.0.0.1:{ports[0]['HostPort']}/health", timeout=2)
        except httpx.HTTPError:
            continue
        return answer.status_code == 503
    return False


def pause(client: DockerClient, container_ids: list[str], attempts: int = 50) -> list[str]:
    """``docker pause`` each container (a hung server or sandbox); their ids.

    On cgroup v1 runc freezes a container by writing FROZEN and polling the freezer's
    state; on a machine whose cores are all busy the tasks may not all reach the
    refrigerator in time and runc gives up with "unable to freeze" (thawing them again,
    seen here under a CPU hog). The container is then still running: try again.
    """
    from docker.errors import APIError

    assert container_ids
    for container_id in container_ids:
        for attempt in range(1, attempts + 1):
            try:
                client.api.pause(container_id)
                break
            except APIError as exc:
                if "unable to freeze" not in str(exc) or attempt == attempts:
                    raise
                time.sleep(0.1)
    return container_ids
