"""Every default value of the harness that more than one module needs, defined once."""

from __future__ import annotations

GPU_IMAGE = "ghcr.io/ggml-org/llama.cpp:server-cuda"
CPU_IMAGE = "ghcr.io/ggml-org/llama.cpp:server"
#: The CPU image built from Debian packages (docker/llama-server/build-debian.sh).
LOCAL_CPU_IMAGE = "local/llama.cpp:server"
#: The evaluation sandbox (docker/sandbox/build-debian.sh).
SANDBOX_IMAGE = "local/bench-sandbox:latest"
#: Seconds to wait for /health (gpt-oss-120b loads ~61 GB from disk).
HEALTH_TIMEOUT_S = 600.0
#: max_tokens of each request, as EvalPlus sends it (provider/base.py).
MAX_TOKENS = 768
#: How each task is asked: EvalPlus's chat prompt (instruct models) or its direct
#: completion of the task's code (base models). PROMPT_MODE / --bench-prompt-mode.
PROMPT_MODES = ("chat", "completion")
PROMPT_MODE = "chat"
