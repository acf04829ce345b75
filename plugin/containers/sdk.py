"""The names of the docker SDK the rest of the harness uses. Only plugin.containers
imports ``docker``; everything else takes these from here."""

from __future__ import annotations

from docker.client import DockerClient  # submodule: ./docker/ shadows the SDK for mypy
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import DeviceRequest, Mount, Ulimit

__all__ = ["APIError", "DeviceRequest", "DockerClient", "DockerException", "ImageNotFound",
           "Mount", "NotFound", "Ulimit"]
