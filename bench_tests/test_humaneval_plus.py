"""HumanEval+ (164 tasks): pass@1 of every bench profile, judged by the full gate.

Runs once per ``bench-*`` profile of models.conf (ids are profile names, so
``pytest bench_tests -k qwen3`` selects the Qwen3 profiles). The ``bench_result`` fixture
starts the profile's llama-server, generates one greedy answer per task, evaluates them in
the sandbox and returns the scores; an infrastructure failure there is a test *error*.
``bench_gate`` is the gate's verdict (README "Gate"): reference - tolerance, and the
exact McNemar test on the tasks that flipped against the profile's pinned baseline run.
"""

from __future__ import annotations

import pytest

from plugin.gate.checks import run_problems

pytestmark = pytest.mark.bench_dataset("humaneval")


def test_humaneval_plus(bench_result, bench_gate):
    problems = run_problems(bench_result)
    assert not problems, "\n".join(problems)
    assert bench_gate.ok, bench_gate.message
