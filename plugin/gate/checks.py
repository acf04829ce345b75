"""Run-level checks that fail a benchmark test whatever its score."""

from __future__ import annotations

from typing import Any


def run_problems(result: Any) -> list[str]:
    """Empty answers and unjudged tasks: each makes the run untrustworthy on its own. In
    completion mode an empty completion is an answer (the model stopped at once: the
    program is the prompt's stub, which EvalPlus scores as a failure), not a problem."""
    problems = []
    if result.no_answer and getattr(result, "prompt_mode", "chat") != "completion":
        problems.append(
            f"{len(result.no_answer)} task(s) got no answer (empty content); "
            f"{len(result.thinking_exhausted)} of them because thinking used the whole "
            f"max_tokens budget: {result.no_answer[:10]}. See "
            f"{result.out_dir}/completions.jsonl (reasoning_content); raise MAX_TOKENS, set "
            "THINKING=off, or opt in to CODE_FROM_REASONING=on for the profile in models.conf")
    if result.unjudged:
        problems.append(f"{len(result.unjudged)} task(s) have no verdict: "
                        f"{result.unjudged[:10]}")
    return problems
