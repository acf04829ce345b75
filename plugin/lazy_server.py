"""A llama-server that starts only when a request must really be sent.

An unchanged profile re-run has every completion stored under its fingerprint, and for
container profiles the fingerprint is known without the server (model file identity,
image id, arguments), so a big model's minutes of loading are skipped entirely.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from plugin.config import Profile
from plugin.server import ServerHandle, llama_server, read_log_tail


class LazyServer:
    """Starts the profile's server on first :meth:`get`; :meth:`close` tears it down."""

    def __init__(self, profile: Profile, *, log_path: Path, run_id: str,
                 client: Any | None = None) -> None:
        self.profile = profile
        self.log_path = log_path
        self.run_id = run_id
        self.client = client
        self._stack = contextlib.ExitStack()
        self._handle: ServerHandle | None = None
        self._error: BaseException | None = None

    @property
    def started(self) -> bool:
        return self._handle is not None

    def get(self) -> ServerHandle:
        """The healthy server, started now if needed (a failed start is not retried)."""
        if self._error is not None:
            raise self._error
        if self._handle is None:
            try:
                self._handle = self._stack.enter_context(llama_server(
                    self.profile, log_path=self.log_path, run_id=self.run_id,
                    client=self.client))
            except BaseException as exc:
                self._error = exc
                raise
        return self._handle

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
        self._stack.close()
        self._handle = None
