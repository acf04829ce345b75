"""Code extraction from an answer, with EvalPlus's own sanitizer.

``evalplus.sanitize.sanitize`` parses the text with tree-sitter and keeps the code block
with the entry point and what it depends on. It only parses: nothing of the answer runs
here. (It is slow on very long texts, about 14 s for 600 lines.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from plugin.generation.request import completion_prompt
from plugin.sandbox.compat import import_light


@functools.cache
def _sanitize() -> Callable[..., Any]:
    """EvalPlus's own ``sanitize``, imported on first use without HF ``datasets`` (which
    ``evalplus.sanitize`` pulls in through ``evalplus.data`` and never calls; see
    ``compat.import_light``): 0.05 s instead of seconds, in every process that extracts."""
    return import_light("evalplus.sanitize").sanitize  # type: ignore[no-any-return]


def extract_code(answer: str, entry_point: str) -> str:
    """The program EvalPlus would evaluate for ``answer`` ("" when there is none)."""
    if not answer.strip():
        return ""
    return str(_sanitize()(answer, entrypoint=entry_point))


def completion_program(task_prompt: str, completion: str) -> str:
    """A direct completion's program as EvalPlus builds it: the prompt sent plus the
    completion (codegen.py:88), tabs in the completion as four spaces (what its vllm and
    hf providers do to every output, vllm.py:68)."""
    return completion_prompt(task_prompt) + completion.replace("\t", "    ")


def extract_completion(task_prompt: str, completion: str, entry_point: str) -> str:
    """The program EvalPlus would evaluate for a direct completion: prompt + completion,
    sanitized (codegen.py:89). An empty completion leaves the prompt alone (a stub)."""
    return extract_code(completion_program(task_prompt, completion), entry_point)
