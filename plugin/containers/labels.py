"""x"""

from __future__ import annotations

import os
import socket

LABEL_HARNESS = "bench.harness"


HARNESS_NAME = "llama-bench"


LABEL_RUN_ID = "bench.run_id"


LABEL_PROFILE = "bench.profile"


LABEL_OWNER_PID = "bench.owner_pid"


LABEL_OWNER_HOST = "bench.owner_host"


LABEL_ROLE = "bench.role"


ROLE_SERVER = "server"


ROLE_GPU_PROBE = "gpu-probe"  # plugin.server.gpus: lists /dev with the server's device requests


def harness_labels(*, run_id: str, role: str, profile: str | None = None) -> dict[str, str]:
    """Labels that let :func:`reap_stale_containers` find a container whose owner died."""
    labels = {
        LABEL_HARNESS: HARNESS_NAME,
        LABEL_RUN_ID: run_id,
        LABEL_OWNER_PID: str(os.getpid()),
        LABEL_OWNER_HOST: socket.gethostname(),
        LABEL_ROLE: role,
    }
    if profile is not None:
        labels[LABEL_PROFILE] = profile
    return labels


LABELS = {"bench.harness": "llama-bench", "bench.role": "sandbox"}
