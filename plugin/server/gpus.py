"""GPU preflight: before a GPU profile's container starts, check that the engine can give
it the GPUs it names, and fail in seconds (not after loading tens of GB on the CPU).

Three sources, in this order:

1. the profile alone: ``-ot ...=CUDAn`` needs n+1 GPUs inside the container, and a
   ``GPUS=`` id list shows the container exactly that many (renumbered from CUDA0);
2. the engine's ``GET /info``: an ``nvidia`` runtime, CDI devices ``nvidia.com/gpu=N``
   (Docker 28.2+ lists them as ``DiscoveredDevices``);
3. a probe: a container of the profile's image, with the server's own device requests,
   that lists ``/dev``. The engine's answer to it is the final word: Docker can also serve
   ``--gpus`` through the NVIDIA hook without listing a runtime, and a missing GPU id is
   only refused when a container asks for it.

:func:`judge` is pure (info and probe answers in, a problem or None out), so it is tested
against this machine's real engine and against a recorded answer of a two-GPU engine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from plugin.config.profile import Profile, cuda_indices
from plugin.containers.managed import managed_container
from plugin.containers.sdk import APIError, DockerException

NVIDIA_CDI_PREFIX = "nvidia.com/gpu="
#: Refusals of a device request that mean "no such GPU here" (vs. a probe that could not
#: run its command, which tells nothing about GPUs).
_GPU_REFUSAL = re.compile(r"device driver|nvidia|cdi|gpu|unknown device", re.IGNORECASE)
_DEV_GPU = re.compile(r"^nvidia(\d+)$")
PROBE_COMMAND = ("/bin/sh", "-c", "ls -1 /dev")


@dataclass(frozen=True)
class Engine:
    """What ``GET /info`` says about GPUs."""

    url: str
    runtimes: tuple[str, ...]
    default_runtime: str
    cdi_devices: tuple[str, ...]  # nvidia.com/gpu=... ids the engine discovered

    @classmethod
    def from_info(cls, info: Mapping[str, Any], url: str = "the Docker engine") -> Engine:
        devices = []
        for device in info.get("DiscoveredDevices") or ():
            name = str(device.get("ID") or device.get("Name") or "")
            if str(device.get("Source", "")).lower() == "cdi" and \
                    name.startswith(NVIDIA_CDI_PREFIX):
                devices.append(name)
        return cls(url=url, runtimes=tuple(sorted(info.get("Runtimes") or {})),
                   default_runtime=str(info.get("DefaultRuntime") or ""),
                   cdi_devices=tuple(devices))

    @property
    def nvidia_runtime(self) -> bool:
        return "nvidia" in self.runtimes

    @property
    def cdi_indices(self) -> tuple[str, ...]:
        """GPU indices named by the CDI devices (``nvidia.com/gpu=0`` -> "0")."""
        ids = (d[len(NVIDIA_CDI_PREFIX):] for d in self.cdi_devices)
        return tuple(i for i in ids if i.isascii() and i.isdigit())

    def describe(self) -> str:
        cdi = ", ".join(self.cdi_devices) if self.cdi_devices else "none"
        return (f"runtimes {', '.join(self.runtimes) or 'none'} (default "
                f"{self.default_runtime or '?'}); CDI GPU devices: {cdi}")


@dataclass(frozen=True)
class Probe:
    """A probe container's answer: refused with ``error``, or the GPUs it saw in /dev."""

    error: str | None = None
    gpus: tuple[str, ...] | None = None  # nvidia<N> device nodes; None: not listed

    @property
    def refused_gpus(self) -> bool:
        return self.error is not None and bool(_GPU_REFUSAL.search(self.error))

    @classmethod
    def from_listing(cls, listing: str) -> Probe:
        names = (line.strip() for line in listing.splitlines())
        return cls(gpus=tuple(sorted(m.group(1) for n in names if (m := _DEV_GPU.match(n)))))


@dataclass(frozen=True)
class Problem:
    what: str
    fix: str


def asked(profile: Profile) -> str:
    """The GPUs a profile asks for, and where that came from."""
    gpus = "all GPUs" if profile.gpus == ("all",) else f"GPUs {','.join(profile.gpus)}"
    if "GPUS" in profile.key_lines or "GPUS" in profile.overrides:
        return f"{gpus} (GPUS at {profile.where('GPUS')})"
    if cuda_indices(profile.extra_args):
        return f"{gpus} (from the -ot ...=CUDAn splits at {profile.where('EXTRA_ARGS')})"
    return f"{gpus} (N_GPU_LAYERS={profile.n_gpu_layers} at {profile.where('N_GPU_LAYERS')})"


def judge(profile: Profile, engine: Engine | None, probe: Probe | None) -> Problem | None:
    """Why ``profile`` cannot get its GPUs, or None. ``engine``/``probe`` None: not asked
    (only the profile's own consistency is checked)."""
    if not profile.gpus:
        return None
    cpu_fix = (f"or run on CPU: GPUS=none and N_GPU_LAYERS=0 in [{profile.name}] "
               f"({profile.where()})")
    needed = max((int(i) for i in cuda_indices(profile.extra_args)), default=-1) + 1
    ids = () if profile.gpus == ("all",) else profile.gpus
    if ids and needed > len(ids):
        return Problem(
            f"the -ot splits name CUDA{needed - 1}, but GPUS={','.join(ids)} shows the "
            f"container {len(ids)} GPU(s), numbered CUDA0..CUDA{len(ids) - 1}",
            f"expose GPUs 0..{needed - 1} (GPUS={','.join(str(i) for i in range(needed))}) "
            f"or GPUS=all at {profile.where('GPUS')}")
    if engine is None:
        return None
    toolkit_fix = ("install the NVIDIA Container Toolkit on the Docker host and run "
                   "'sudo nvidia-ctk runtime configure --runtime=docker' and restart "
                   f"Docker (check: docker run --rm --gpus all --entrypoint nvidia-smi "
                   f"{profile.image} -L), {cpu_fix}")
    if engine.cdi_indices and ids:
        missing = [i for i in ids if i.isdigit() and i not in engine.cdi_indices]
        if missing:
            return Problem(f"the engine has no GPU {','.join(missing)} (its CDI GPUs: "
                           f"{','.join(engine.cdi_indices)})",
                           f"ask only for GPUs the host has (nvidia-smi -L), {cpu_fix}")
    if probe is not None and probe.refused_gpus:
        if engine.nvidia_runtime or engine.cdi_devices:
            return Problem("the engine refused a container that asks for them",
                           f"ask only for GPUs the host has (nvidia-smi -L), {cpu_fix}")
        return Problem("the engine has no NVIDIA runtime and no CDI GPU devices, and "
                       "refused a container that asks for them", toolkit_fix)
    if probe is not None and probe.gpus is not None and probe.error is None:
        if not probe.gpus:
            return Problem("a container that asks for them sees no GPU (/dev has no "
                           "nvidia<N> device)", toolkit_fix)
        if needed > len(probe.gpus):
            return Problem(f"the -ot splits name CUDA{needed - 1}, but a container that asks "
                           f"for them sees {len(probe.gpus)} GPU(s)",
                           f"split over CUDA0..CUDA{len(probe.gpus) - 1} in EXTRA_ARGS at "
                           f"{profile.where('EXTRA_ARGS')}, {cpu_fix}")
    return None


def message(profile: Profile, engine: Engine | None, probe: Probe | None,
            problem: Problem) -> str:
    has = engine.describe() if engine else "not asked"
    if probe is None:
        seen = "not run"
    elif probe.error is not None:
        seen = f"refused ({probe.error})"
    else:
        seen = f"GPUs seen in the container: {', '.join(probe.gpus or ()) or 'none'}"
    return (f"profile [{profile.name}] asks for {asked(profile)}, but {problem.what}\n"
            f"  engine {engine.url if engine else ''}: {has}\n"
            f"  probe container ({profile.image}): {seen}\n"
            f"  fix: {problem.fix}")


def run_probe(client: Any, profile: Profile, device_requests: Sequence[Any],
              labels: Mapping[str, str], name: str, timeout_s: float = 60.0) -> Probe:
    """Start a throwaway container of the profile's image with ``device_requests`` and
    list its /dev; a refusal is the engine's own answer about the GPUs."""
    create = {"image": profile.image, "entrypoint": list(PROBE_COMMAND), "command": [],
              "device_requests": list(device_requests), "labels": dict(labels), "name": name,
              "network_disabled": True, "detach": True}
    try:
        with managed_container(client, create) as managed:
            container = managed.container
            try:
                container.start()
            except APIError as exc:
                return Probe(error=_explanation(exc))
            outcome = container.wait(timeout=timeout_s)
            listing = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
    except APIError as exc:  # Docker refused to create it
        return Probe(error=_explanation(exc))
    except (DockerException, OSError):
        return Probe()  # nothing learnt
    if int(outcome.get("StatusCode", 1)) != 0:
        return Probe()  # the image could not list /dev: nothing learnt, not a refusal
    return Probe.from_listing(listing)


def _explanation(exc: Any) -> str:
    text = str(getattr(exc, "explanation", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
