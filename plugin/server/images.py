"""The image a profile needs: on the engine, the local CPU build, or pulled."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from plugin.config import defaults as D
from plugin.config.profile import Profile
from plugin.containers.client import engine_url, first_line
from plugin.containers.sdk import APIError, DockerClient, DockerException, ImageNotFound
from plugin.errors import (
    ImageMissingError,
)

DEFAULT_CPU_IMAGE = D.CPU_IMAGE
LOCAL_CPU_IMAGE = D.LOCAL_CPU_IMAGE
_said: set[tuple[str, str]] = set()


def ensure_image(client: DockerClient, profile: Profile,
                 say: Callable[[str], None] = lambda _line: None) -> Profile:
    """The profile, with an image that is on the engine: already there; for the stock CPU
    image (not chosen on the command line or in the environment), the locally built
    ``local/llama.cpp:server`` when that is there (said once per engine); else pulled
    through the engine, progress through ``say``. Raises ImageMissingError with both
    fixes when the pull fails."""
    if _has_image(client, profile.image):
        return profile
    if (not profile.gpus and profile.image == DEFAULT_CPU_IMAGE
            and "CPU_IMAGE" not in profile.overrides and _has_image(client, LOCAL_CPU_IMAGE)):
        key = (engine_url(client) or "", profile.image)
        if key not in _said:
            _said.add(key)
            say(f"llama-bench: {DEFAULT_CPU_IMAGE} is not on the Docker engine; CPU profiles "
                f"use the locally built {LOCAL_CPU_IMAGE} (pass --bench-cpu-image to choose)")
        return replace(profile, image=LOCAL_CPU_IMAGE)
    key_name = "IMAGE" if profile.gpus else "CPU_IMAGE"
    try:
        _pull(client, profile.image, say)
    except (APIError, DockerException, OSError) as exc:
        raise ImageMissingError(
            f"image {profile.image} is not on the Docker engine and could not be pulled "
            f"({first_line(exc)}); profile [{profile.name}], {key_name} from "
            f"{profile.where(key_name)}\n"
            f"  fix: make the registry reachable (docker login) and run "
            f"docker pull {profile.image}, or build the CPU image from Debian packages "
            f"(make images) and pass --bench-cpu-image {LOCAL_CPU_IMAGE}") from None
    return profile


def _has_image(client: DockerClient, image: str) -> bool:
    try:
        client.images.get(image)
    except ImageNotFound:
        return False
    return True


def _pull(client: DockerClient, image: str, say: Callable[[str], None]) -> None:
    """``docker pull`` through the SDK; one progress line per layer state change."""
    repository, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] \
        else (image, "", "latest")
    say(f"llama-bench: pulling {image}")
    seen: dict[str, str] = {}
    for event in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
        if "error" in event:
            raise APIError(str(event["error"]))
        layer, status = str(event.get("id", "")), str(event.get("status", ""))
        if layer and status and seen.get(layer) != status and "ing" not in status[-3:]:
            seen[layer] = status
            say(f"llama-bench: {image}: {layer} {status}")
    if not _has_image(client, image):
        raise APIError(f"the pull of {image} ended without the image")
    say(f"llama-bench: pulled {image}")


def require_image(client: DockerClient, profile: Profile) -> None:
    try:
        client.images.get(profile.image)
    except ImageNotFound:
        key = "IMAGE" if profile.gpus else "CPU_IMAGE"
        raise ImageMissingError(
            f"image {profile.image} not found on the Docker engine (profile "
            f"[{profile.name}], {key} from {profile.where(key)})\n"
            f"  fix: docker pull {profile.image}, or build the local CPU image with "
            "docker/llama-server/build-debian.sh and pass --bench-cpu-image / --bench-image"
        ) from None
