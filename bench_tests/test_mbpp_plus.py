"""MBPP+ (378 tasks, v0.2.0): pass@1 of every bench profile against its reference.

Same pipeline and gate as HumanEval+ (EvalPlus prompts, greedy, sandboxed evaluation with
EvalPlus's MBPP oracles). The canaries are trained on HumanEval+ only: their MBPP+
answers are noise and would cost ~378 x 768 tokens, so they are left out here.
"""

from __future__ import annotations

import pytest

from plugin.references import gate

pytestmark = [pytest.mark.bench_dataset("mbpp"), pytest.mark.bench_profiles("!bench-canary*")]


def test_mbpp_plus(bench_result, bench_reference):
    r = bench_result
    assert not r.no_answer, (
        f"{len(r.no_answer)} task(s) got no answer (empty content); "
        f"{len(r.thinking_exhausted)} of them because thinking used the whole max_tokens "
        f"budget: {r.no_answer[:10]}. See {r.out_dir}/completions.jsonl (reasoning_content); "
        "raise MAX_TOKENS or set THINKING=off for the profile in models.conf")
    assert not r.unjudged, f"{len(r.unjudged)} task(s) have no verdict: {r.unjudged[:10]}"
    outcome = gate(r.plus_pass_at_1, bench_reference, partial=r.partial)
    assert outcome.ok, outcome.message
