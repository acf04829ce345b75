"""Ask the server: async requests with retries, a watchdog for a hung or dead server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import httpx

from plugin.errors import ServerDiedError
from plugin.generation.request import PromptMode, Sampling
from plugin.generation.store import Completion, CompletionStore

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class MalformedResponseError(ValueError):
    """HTTP 200 whose body is not a completion (cut short, not JSON, no choices)."""


def parse_completion_body(response: httpx.Response, text: bool = False) -> dict[str, Any]:
    """The JSON of a chat completion (``text``: of a text completion), checked for the
    field the answer is read from (``choices[0].message``, ``choices[0].text``);
    MalformedResponseError otherwise (retried: a proxy or a crashing server can cut it)."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MalformedResponseError(f"body is not JSON ({exc}): {response.text[:120]!r}"
                                     ) from None
    choices = data.get("choices") if isinstance(data, dict) else None
    field, kind = ("text", str) if text else ("message", dict)
    if (not isinstance(choices, list) or not choices or not isinstance(choices[0], dict)
            or not isinstance(choices[0].get(field), kind)):
        raise MalformedResponseError(f"no choices[0].{field} in {response.text[:120]!r}")
    return cast(dict[str, Any], data)


@dataclass
class Progress:
    """Counters a progress display reads; updated as completions arrive."""

    total: int
    done: int = 0
    reused: int = 0
    completion_tokens: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def tokens_per_s(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.completion_tokens / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        fresh = self.done - self.reused
        remaining = self.total - self.done
        elapsed = time.monotonic() - self.started
        return elapsed / fresh * remaining if fresh > 0 else None


@dataclass(frozen=True)
class Retry:
    attempts: int = 6
    first_delay_s: float = 0.5
    max_delay_s: float = 8.0
    request_timeout_s: float = 900.0
    #: /health failing this long in a row (a hung or paused server) ends the run.
    hang_timeout_s: float = 300.0
    #: How often the watchdog asks ``alive()`` during a run.
    watch_interval_s: float = 5.0
    #: A server process seen gone is given this long to come back (``docker restart``
    #: stops the container before starting it) before the run ends.
    gone_grace_s: float = 10.0


async def _still_there(alive: Callable[[], bool], grace_s: float) -> bool:
    """``alive()``, asked again for up to ``grace_s`` seconds while it says no."""
    deadline = time.monotonic() + grace_s
    while not await asyncio.to_thread(alive):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.5)
    return True


async def _post_with_retry(client: httpx.AsyncClient, where: Callable[[], str],
                           body: dict[str, Any], retry: Retry, alive: Callable[[], bool],
                           moved: Callable[[], Awaitable[bool]] | None = None,
                           text: bool = False) -> tuple[dict[str, Any], int]:
    delay = retry.first_delay_s
    last = "no attempt"
    url = where()
    for attempt in range(1, retry.attempts + 1):
        url = where()
        try:
            response = await client.post(url, json=body)
            if response.status_code == 200:
                return parse_completion_body(response, text), attempt
            last = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code in (401, 403):
                raise ServerDiedError(
                    f"POST {url} was refused ({last})\n  fix: the server wants an API key: "
                    "set API_KEY_ENV=<variable name> in the profile and export that "
                    "variable with the server's key")
            if response.status_code not in RETRY_STATUS:
                raise ServerDiedError(f"POST {url} failed permanently: {last}")
        except (httpx.TransportError, MalformedResponseError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, httpx.TransportError) and moved is not None and await moved():
                continue  # restarted on a new port: ask there at once
        if not await _still_there(alive, retry.gone_grace_s):
            raise ServerDiedError(f"llama-server is gone (POST {url}: {last})")
        await asyncio.sleep(delay)
        delay = min(delay * 2, retry.max_delay_s)
    raise ServerDiedError(f"POST {url} failed {retry.attempts} times; last error: {last}")


async def _generate(endpoint: Endpoint, prompts: Mapping[str, str], sampling: Sampling,
                    mode: PromptMode, store: CompletionStore, fingerprint: str,
                    concurrency: int, retry: Retry, progress: Progress,
                    on_completion: Callable[[Completion, Progress], None] | None,
                    ) -> dict[str, Completion]:
    root = {"url": endpoint.url.rstrip("/")}
    alive, healthy = endpoint.is_running, endpoint.is_alive

    def where() -> str:
        return root["url"] + mode.path

    async def moved() -> bool:
        """After a connection failure: has the server moved (restart, new port)?"""
        found = (await asyncio.to_thread(endpoint.relocate)).rstrip("/")
        changed, root["url"] = found != root["url"], found
        return changed

    results: dict[str, Completion] = {}
    gate = asyncio.Semaphore(max(1, concurrency))
    timeout = httpx.Timeout(retry.request_timeout_s, connect=10.0)
    limits = httpx.Limits(max_connections=max(1, concurrency))

    async with httpx.AsyncClient(timeout=timeout, limits=limits,
                                 headers=dict(endpoint.headers)) as client:

        async def one(task_id: str, prompt: str) -> None:
            async with gate:
                started = time.monotonic()
                data, attempts = await _post_with_retry(
                    client, where, mode.body(sampling, prompt), retry, alive, moved,
                    text=mode.is_completion)
                completion = Completion.from_response(task_id, fingerprint, data,
                                                      time.monotonic() - started, attempts)
            store.append(completion)
            results[task_id] = completion
            progress.done += 1
            progress.completion_tokens += completion.completion_tokens
            if on_completion:
                on_completion(completion, progress)

        jobs = [asyncio.ensure_future(one(t, p)) for t, p in prompts.items()]
        watchdog: asyncio.Future[Any] = asyncio.ensure_future(_watch(healthy, retry))
        work: asyncio.Future[Any] = asyncio.gather(*jobs)
        try:
            await asyncio.wait([work, watchdog], return_when=asyncio.FIRST_COMPLETED)
            if watchdog.done():
                watchdog.result()  # raises: the server stopped answering
            await work
        finally:
            for job in [*jobs, watchdog, work]:
                job.cancel()
            await asyncio.gather(*jobs, watchdog, work, return_exceptions=True)
    return results


async def _watch(healthy: Callable[[], bool], retry: Retry) -> None:
    """Raise ServerDiedError once ``healthy()`` has been false for ``hang_timeout_s``.

    A request in flight to a hung server (SIGSTOP, ``docker pause``, a wedged GPU) would
    wait for its full read timeout; this ends the run much sooner, and a server that comes
    back before the limit costs nothing (its requests simply complete).
    """
    down_since: float | None = None
    while True:
        await asyncio.sleep(retry.watch_interval_s)
        ok = await asyncio.to_thread(healthy)
        now = time.monotonic()
        if ok:
            down_since = None
            continue
        down_since = down_since if down_since is not None else now
        if now - down_since >= retry.hang_timeout_s:
            raise ServerDiedError(
                f"llama-server stopped answering: its health check has failed for "
                f"{now - down_since:.0f} s in a row (hung, paused or overloaded); answers "
                f"received so far are stored\n  fix: read the server log; if the server is "
                f"merely slow, raise --bench-hang-timeout")


class Endpoint(Protocol):
    """The server generation talks to (a :class:`plugin.server.lifecycle.ServerHandle` is
    one): where it answers now, what each request carries, and whether it is still there."""

    @property
    def url(self) -> str: ...  # the server root now (no /v1)

    @property
    def headers(self) -> Mapping[str, str]: ...  # sent with every request (API key)

    def is_running(self) -> bool: ...  # the process exists (a paused or busy one counts)

    def is_alive(self) -> bool: ...  # /health answers: the hang watchdog polls it

    def relocate(self) -> str: ...  # the root after a restart (a new host port)


@dataclass(frozen=True)
class UrlEndpoint:
    """An :class:`Endpoint` made of a URL and optional checks (no container behind it)."""

    base_url: str
    request_headers: Mapping[str, str] = field(default_factory=dict)
    alive: Callable[[], bool] = lambda: True
    healthy: Callable[[], bool] | None = None
    find: Callable[[], str] | None = None

    @property
    def url(self) -> str:
        return self.base_url

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request_headers

    def is_running(self) -> bool:
        return self.alive()

    def is_alive(self) -> bool:
        return (self.healthy or self.alive)()

    def relocate(self) -> str:
        return self.find() if self.find is not None else self.base_url


def generate(server: Endpoint | str, prompts: Mapping[str, str], sampling: Sampling,
             store_path: Path, fingerprint: str, *, mode: PromptMode | None = None,
             concurrency: int = 1,
             retry: Retry | None = None,
             on_completion: Callable[[Completion, Progress], None] | None = None,
             alive: Callable[[], bool] = lambda: True,
             headers: Mapping[str, str] | None = None,
             healthy: Callable[[], bool] | None = None,
             relocate: Callable[[], str] | None = None,
             ) -> tuple[dict[str, Completion], Progress]:
    """Completions for every task of ``prompts`` (task_id -> task prompt), in task order,
    asked as ``mode`` says (default: EvalPlus's chat prompt).

    Completions already stored under ``fingerprint`` are reused without a request.
    ``server``: an :class:`Endpoint`, or a bare URL described by the keywords (a
    :class:`UrlEndpoint`). Its ``is_running()`` false (the process is gone) ends the run at
    the next failed request; ``is_alive()`` false for ``retry.hang_timeout_s`` in a row ends
    it even while requests hang. ``relocate()`` is asked after a connection failure, as a
    restarted container comes back on a new host port.
    """
    endpoint = server if not isinstance(server, str) else UrlEndpoint(
        server, headers or {}, alive, healthy, relocate)
    store = CompletionStore(store_path)
    known = store.load(fingerprint)
    missing = {t: p for t, p in prompts.items() if t not in known}
    progress = Progress(total=len(prompts), done=len(prompts) - len(missing),
                        reused=len(prompts) - len(missing))
    fresh: dict[str, Completion] = {}
    if missing:
        fresh = asyncio.run(_generate(endpoint, missing, sampling, mode or PromptMode(),
                                      store, fingerprint, concurrency, retry or Retry(),
                                      progress, on_completion))
    merged = {**known, **fresh}
    return {t: merged[t] for t in prompts}, progress
