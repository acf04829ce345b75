"""Answers as they arrive: completions.jsonl, tagged by fingerprint, resumable."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Completion:
    task_id: str
    fingerprint: str
    content: str
    reasoning_content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    prompt_per_second: float | None
    predicted_per_second: float | None
    wall_s: float
    attempts: int
    system_fingerprint: str = ""

    @property
    def outcome(self) -> str:
        """ok | truncated | no_answer (evaluation later splits ok into pass/fail)."""
        if not self.content.strip():
            return "no_answer"
        if self.finish_reason == "length":
            return "truncated"
        return "ok"

    @property
    def thinking_exhausted(self) -> bool:
        """The budget ran out while the model was still thinking: no answer at all."""
        return (self.finish_reason == "length" and bool(self.reasoning_content.strip())
                and not self.content.strip())

    @classmethod
    def from_response(cls, task_id: str, fingerprint: str, data: Mapping[str, Any],
                      wall_s: float, attempts: int) -> Completion:
        choice = (data.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        usage = data.get("usage") or {}
        timings = data.get("timings") or {}
        details = usage.get("completion_tokens_details") or {}
        return cls(
            task_id=task_id,
            fingerprint=fingerprint,
            # a chat completion's message, or a text completion's text (/v1/completions)
            content=(message.get("content") if "message" in choice
                     else choice.get("text")) or "",
            reasoning_content=message.get("reasoning_content") or "",
            finish_reason=choice.get("finish_reason") or "",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            reasoning_tokens=int(details.get("reasoning_tokens") or 0),
            prompt_per_second=timings.get("prompt_per_second"),
            predicted_per_second=timings.get("predicted_per_second"),
            wall_s=round(wall_s, 4),
            attempts=attempts,
            system_fingerprint=data.get("system_fingerprint") or "",
        )


class CompletionStore:
    """Append-only JSONL of completions; the newest record per (task, fingerprint) wins."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def load(self, fingerprint: str) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        if not self.path.exists():
            return found
        with self.path.open(encoding="utf-8") as fh:
            for line in fh:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill: the task is simply re-asked
                if record.get("fingerprint") == fingerprint:
                    found[record["task_id"]] = Completion(**record)
        return found

    def append(self, completion: Completion) -> None:
        """One ``write`` of one whole line on an O_APPEND descriptor: a kill leaves the
        line entirely there or absent (a cut line is skipped by :meth:`load` anyway)."""
        line = (json.dumps(asdict(completion)) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            written = os.write(fd, line)
            while written < len(line):  # a short write (signal, full disk): finish it
                written += os.write(fd, line[written:])
        finally:
            os.close(fd)


def summarize(completions: Iterable[Completion]) -> dict[str, Any]:
    """Run-level generation statistics."""
    items = list(completions)
    rates = [c.predicted_per_second for c in items if c.predicted_per_second]
    prompt_rates = [c.prompt_per_second for c in items if c.prompt_per_second]
    return {
        "n": len(items),
        "prompt_tokens": sum(c.prompt_tokens for c in items),
        "completion_tokens": sum(c.completion_tokens for c in items),
        "reasoning_tokens": sum(c.reasoning_tokens for c in items),
        "gen_tokens_per_s": round(sum(rates) / len(rates), 2) if rates else None,
        "prompt_tokens_per_s": round(sum(prompt_rates) / len(prompt_rates), 2)
        if prompt_rates else None,
        "request_wall_s": round(sum(c.wall_s for c in items), 3),
        "no_answer": [c.task_id for c in items if c.outcome == "no_answer"],
        "thinking_exhausted": [c.task_id for c in items if c.thinking_exhausted],
        "truncated": [c.task_id for c in items if c.outcome == "truncated"],
    }
