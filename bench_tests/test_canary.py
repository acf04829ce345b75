"""Known-answer check: the canary models must get exactly their designed verdicts.

The canaries (models/canary: one GGUF, two chat templates) answer every HumanEval+ task
in a designed way through a real llama-server; any difference from
``canary-humaneval.expected.jsonl`` means the harness changed the prompt, the decoding,
the extraction or the evaluation.
"""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.bench_dataset("humaneval"),
              pytest.mark.bench_profiles("bench-canary", "bench-canary-think")]

#: Tasks whose answer the thinking variant cannot finish within 768 tokens.
THINK_TRUNCATED = {"HumanEval/81"}


def _expected(profile):
    path = profile.models_dir / "canary-humaneval.expected.jsonl"
    with path.open(encoding="utf-8") as fh:
        return {r["task_id"]: r["designed_to_pass"] for r in map(json.loads, fh)}


def test_canary_verdicts(bench_profile, bench_result):
    expected = _expected(bench_profile)
    if bench_result.partial:
        expected = {t: v for t, v in expected.items() if t in bench_result.verdicts}
    truncated = THINK_TRUNCATED if bench_profile.name.endswith("-think") else set()
    if truncated:
        assert set(bench_result.truncated) == truncated & set(expected)
        expected = {t: (v and t not in truncated) for t, v in expected.items()}
    got = {t: v["base"] == "pass" and v["plus"] == "pass"
           for t, v in bench_result.verdicts.items()}
    wrong = sorted((t for t in expected if got.get(t) != expected[t]),
                   key=lambda t: int(t.split("/")[1]))
    details = [f"{t}: expected {'pass' if expected[t] else 'fail'}, got "
               f"{bench_result.verdicts.get(t)}" for t in wrong]
    assert not wrong, f"{len(wrong)} verdict(s) differ from the design:\n" + "\n".join(details)
