"""What is asked: the EvalPlus prompt of a prompt mode, and the sampling settings.

Two modes (PROMPT_MODE), both EvalPlus 0.3.1's own:

* ``chat``: its openai backend, a system and a user message to ``/v1/chat/completions``
  (instruct models).
* ``completion``: its direct completion for base models (``is_direct_completion()``):
  the task's code itself, ``prompt.strip() + "\\n"`` (codegen.py:80), continued through
  ``/v1/completions`` until one of its stop strings; the program is prompt + completion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from plugin.config.defaults import MAX_TOKENS, PROMPT_MODE

CHAT, COMPLETION = "chat", "completion"
SYSTEM_PROMPT = "You are a helpful assistant good at coding."
INSTRUCTION = ("Please provide a self-contained Python script that solves the following "
               "problem in a markdown code block:")
PROMPT_TEMPLATE_ID = "evalplus-0.3.1-openai-chat"
COMPLETION_TEMPLATE_ID = "evalplus-0.3.1-direct-completion"
ENDPOINTS = {CHAT: "/v1/chat/completions", COMPLETION: "/v1/completions"}
TEMPLATE_IDS = {CHAT: PROMPT_TEMPLATE_ID, COMPLETION: COMPLETION_TEMPLATE_ID}

#: evalplus/provider/utility.py ``EOS``, copied: its decoders extend that module-level list
#: in place (``self.eos = EOS; self.eos += ...``), so reading it at run time could see
#: another decoder's additions. tests/test_prompt_modes.py checks it against evalplus.
EOS = ("<|endoftext|>", "<|endofmask|>", "</s>", "\nif __name__", "\ndef main(", "\nprint(")
#: ``extra_eos_for_direct_completion(dataset)`` of the same file.
EXTRA_EOS_FOR_DIRECT_COMPLETION = {
    "humaneval": ("\ndef ", "\nclass ", "\nimport ", "\nfrom ", "\nassert "),
    "mbpp": ('\n"""', "\nassert"),
}


def user_message(task_prompt: str) -> str:
    """EvalPlus codegen: ``prompt.strip() + "\\n"``, then the backend strips it again."""
    return f"{INSTRUCTION}\n```python\n{task_prompt.strip()}\n```"


def completion_prompt(task_prompt: str) -> str:
    """The text a base model continues: EvalPlus codegen.py:80, sent as it is."""
    return task_prompt.strip() + "\n"


def stop_strings(dataset: str) -> tuple[str, ...]:
    """EvalPlus's stop strings for a direct completion of ``dataset``:
    ``EOS + extra_eos_for_direct_completion(dataset)`` (provider/vllm.py, hf.py)."""
    try:
        return EOS + EXTRA_EOS_FOR_DIRECT_COMPLETION[dataset.lower()]
    except KeyError:
        raise ValueError(f"no direct-completion stop strings for dataset {dataset!r}"
                         ) from None


@dataclass(frozen=True)
class Sampling:
    """Every parameter that changes a greedy answer, sent with each request."""

    max_tokens: int = MAX_TOKENS
    temperature: float = 0.0
    top_k: int = 1
    top_p: float = 0.95  # EvalPlus's value; irrelevant under top_k=1, sent for the record
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = 1234
    # llama-server reuses the KV cache of an earlier prompt's common prefix by default;
    # that changes greedy answers of a real model (measured with Gemma 3 270M: a task's
    # answer differed between a run with and without the reuse), so it is turned off.
    cache_prompt: bool = False
    thinking: str = "auto"  # auto: send nothing; on/off: chat_template_kwargs.enable_thinking
    reasoning_effort: str | None = None

    def _parameters(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items()
                if k not in ("thinking", "reasoning_effort")}

    def body(self, task_prompt: str) -> dict[str, Any]:
        """A chat request (``/v1/chat/completions``) for a task."""
        body: dict[str, Any] = {
            "model": "local",
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_message(task_prompt)},
            ],
            "n": 1,
            "stream": False,
        }
        body.update(self._parameters())
        if self.thinking != "auto":
            body["chat_template_kwargs"] = {"enable_thinking": self.thinking == "on"}
        if self.reasoning_effort:
            body["reasoning_effort"] = self.reasoning_effort
        return body

    def completion_body(self, prompt: str, stop: Sequence[str]) -> dict[str, Any]:
        """A text completion request (``/v1/completions``): no chat template, so the
        thinking settings do not apply."""
        body: dict[str, Any] = {"model": "local", "prompt": prompt, "n": 1, "stream": False,
                                "stop": list(stop)}
        body.update(self._parameters())
        return body


@dataclass(frozen=True)
class PromptMode:
    """How each task of a dataset is asked: ``chat`` or ``completion`` (module doc)."""

    name: str = PROMPT_MODE
    dataset: str = "humaneval"

    def __post_init__(self) -> None:
        if self.name not in ENDPOINTS:
            raise ValueError(f"unknown prompt mode {self.name!r}: not one of "
                             + ", ".join(ENDPOINTS))

    @property
    def path(self) -> str:
        """The endpoint under the server root."""
        return ENDPOINTS[self.name]

    @property
    def template_id(self) -> str:
        """Names the prompt format in the run's fingerprint."""
        return TEMPLATE_IDS[self.name]

    @property
    def is_completion(self) -> bool:
        return self.name == COMPLETION

    def body(self, sampling: Sampling, task_prompt: str) -> dict[str, Any]:
        if self.is_completion:
            return sampling.completion_body(completion_prompt(task_prompt),
                                            stop_strings(self.dataset))
        return sampling.body(task_prompt)
