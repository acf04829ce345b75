"""What is asked: the EvalPlus prompt and the sampling settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from plugin.config.defaults import MAX_TOKENS

SYSTEM_PROMPT = "You are a helpful assistant good at coding."
INSTRUCTION = ("Please provide a self-contained Python script that solves the following "
               "problem in a markdown code block:")
PROMPT_TEMPLATE_ID = "evalplus-0.3.1-openai-chat"


def user_message(task_prompt: str) -> str:
    """EvalPlus codegen: ``prompt.strip() + "\\n"``, then the backend strips it again."""
    return f"{INSTRUCTION}\n```python\n{task_prompt.strip()}\n```"


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
    cache_prompt: bool = False
    thinking: str = "auto"  # auto: send nothing; on/off: chat_template_kwargs.enable_thinking
    reasoning_effort: str | None = None

    def body(self, task_prompt: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": "local",
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user_message(task_prompt)},
            ],
            "n": 1,
            "stream": False,
        }
        body.update({k: v for k, v in asdict(self).items()
                     if k not in ("thinking", "reasoning_effort")})
        if self.thinking != "auto":
            body["chat_template_kwargs"] = {"enable_thinking": self.thinking == "on"}
        if self.reasoning_effort:
            body["reasoning_effort"] = self.reasoning_effort
        return body
