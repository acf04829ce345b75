"""The keys a models.conf profile may carry, and the llama-server flags the harness sets."""

from __future__ import annotations

from collections.abc import Mapping

REQUIRED_KEYS = ("NAME", "MODEL", "CTX_SIZE")


#: Keys a profile may carry, with a one-line meaning (shown in error messages and docs).
KNOWN_KEYS: Mapping[str, str] = {
    "NAME": "human-readable model name",
    "MODEL": "GGUF path, relative to MODELS_DIR (first shard for split models)",
    "CTX_SIZE": "context size passed as -c",
    "N_GPU_LAYERS": "layers offloaded to GPU, passed as -ngl (integer, 'all' or 'auto')",
    "FIT": "on|off, passed as -fit (benchmarks want off)",
    "EXTRA_ARGS": "further llama-server arguments, one shell-quoted string",
    "MODELS_DIR": "directory MODEL is relative to (relative paths: to models.conf's folder)",
    "IMAGE": "Docker image for GPU profiles",
    "CPU_IMAGE": "Docker image for CPU-only profiles (N_GPU_LAYERS=0, no CUDA in -ot)",
    "GPUS": "GPUs to expose: all, none, or device ids like 0,1 (default: from -ot CUDAn)",
    "MAX_TOKENS": "max_tokens sent with each request (EvalPlus uses 768)",
    "HEALTH_TIMEOUT": "seconds to wait for /health to answer 200",
    "THINKING": "auto|on|off: send chat_template_kwargs enable_thinking (off/on) or nothing",
    "REASONING_EFFORT": "reasoning_effort sent with each request (e.g. low|medium|high)",
    "DOCKER_HOST": "Docker engine to start the server on (unix://, tcp://, ssh://)",
    "BASE_URL": "benchmark an already running OpenAI-compatible server (no container)",
    "QUANT": "quantisation label shown in the report (default: guessed from MODEL)",
    "CODE_FROM_REASONING": "on|off: when content is empty, take the code from "
                           "reasoning_content (marked in the report; default off)",
    "TASKS": "a fixed subset: task ids and ranges like HumanEval/0-11 HumanEval/53 "
             "Mbpp/2-13 (a dataset it does not name runs every task); gated task by task "
             "against a baseline of that subset. --bench-tasks all runs every task",
    "PROMPT_MODE": "chat|completion: EvalPlus's chat prompt (default) or its direct "
                   "completion of the task's code, for base models (/v1/completions)",
    "API_KEY_ENV": "name of the environment variable holding the server's API key: the "
                   "container gets it as --api-key (LLAMA_API_KEY) and every request sends "
                   "it; the key itself is never written in models.conf",
}


#: llama-server flags the harness sets itself; EXTRA_ARGS must not repeat them.
RESERVED_FLAGS: Mapping[str, str] = {
    "-m": "MODEL", "--model": "MODEL",
    "-c": "CTX_SIZE", "--ctx-size": "CTX_SIZE",
    "-ngl": "N_GPU_LAYERS", "--n-gpu-layers": "N_GPU_LAYERS", "--gpu-layers": "N_GPU_LAYERS",
    "-fit": "FIT", "--fit": "FIT",
    "--host": "the harness (it binds 0.0.0.0 inside the container)",
    "--port": "the harness (it publishes a free host port)",
    "--api-key": "API_KEY_ENV (the key stays in the environment, out of models.conf)",
    "--api-key-file": "API_KEY_ENV (the harness must know the key to send it)",
}
