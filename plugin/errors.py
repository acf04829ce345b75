"""Named exceptions. Each message says what went wrong, where, and how to fix it."""

from __future__ import annotations


class BenchError(Exception):
    """Base class of every error the harness raises on purpose."""


class ConfigError(BenchError):
    """models.conf (or an option) is malformed. Carries ``path:line`` when known."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 fix: str | None = None) -> None:
        where = path if line is None else f"{path}:{line}"
        text = f"{where}: {message}" if where else message
        if fix:
            text = f"{text}\n  fix: {fix}"
        super().__init__(text)
        self.path = path
        self.line = line
        self.fix = fix


class DockerUnavailableError(BenchError):
    """The Docker engine cannot be reached."""


class ModelFileMissingError(BenchError):
    """A profile's model file does not exist."""


class ServerStartError(BenchError):
    """llama-server did not become healthy (timeout or crash); message has the log tail."""


class ImageMissingError(ServerStartError):
    """The llama-server image is not on the Docker engine (no implicit pull)."""


class GpuUnavailableError(ServerStartError):
    """A GPU profile asks for GPUs the Docker engine cannot give (found before loading)."""


class ServerDiedError(BenchError):
    """llama-server went away during a run: an infrastructure error, never a model failure."""


class DatasetError(BenchError):
    """A dataset file is missing, unreachable or fails its sha256 check."""


class SandboxError(BenchError):
    """The evaluation sandbox could not run (image missing, container crashed...)."""


class SamplesError(BenchError):
    """A samples file (EvalPlus jsonl) is unreadable or malformed; names file:line."""
