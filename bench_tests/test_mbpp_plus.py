"""MBPP+ (378 tasks, v0.2.0): pass@1 of every bench profile against its reference.

Same pipeline and gate as HumanEval+ (EvalPlus prompts, greedy, sandboxed evaluation with
EvalPlus's MBPP oracles). The canaries are trained on HumanEval+ only: their MBPP+
answers are noise and would cost ~378 x 768 tokens, so they are left out here.
"""

from __future__ import annotations

import pytest

from plugin.gate.checks import run_problems

pytestmark = [pytest.mark.bench_dataset("mbpp"), pytest.mark.bench_profiles("!bench-canary*")]


def test_mbpp_plus(bench_result, bench_gate):
    problems = run_problems(bench_result)
    assert not problems, "\n".join(problems)
    assert bench_gate.ok, bench_gate.message
