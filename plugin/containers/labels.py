"""Labels on every container the harness creates: which harness, run, role and owner.

The owner labels (pid and host) are what the reapers go by: a container whose owner
process is gone is removed by the next session (:mod:`plugin.containers.reaper`) or at
once by the owner's watchdog (:mod:`plugin.containers.watchdog`).
"""

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
LABEL_PURPOSE = "bench.purpose"  # sandbox: oracle or evaluate

ROLE_SERVER = "server"
ROLE_GPU_PROBE = "gpu-probe"  # plugin.server.gpus: lists /dev with the server's device requests
ROLE_SANDBOX = "sandbox"


def harness_labels(*, role: str, run_id: str | None = None,
                   profile: str | None = None) -> dict[str, str]:
    """The labels of a container this process creates now."""
    labels = {
        LABEL_HARNESS: HARNESS_NAME,
        LABEL_OWNER_PID: str(os.getpid()),
        LABEL_OWNER_HOST: socket.gethostname(),
        LABEL_ROLE: role,
    }
    if run_id is not None:
        labels[LABEL_RUN_ID] = run_id
    if profile is not None:
        labels[LABEL_PROFILE] = profile
    return labels
