"""Every outcome of the full gate (plugin.references.judge) and the reference file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plugin.errors import ConfigError
from plugin.gate.references import Reference, load_references
from plugin.gate.verdicts import (
    FAIL_DROP,
    FAIL_TOLERANCE,
    FLAGGED_RISE,
    NO_BASELINE,
    PARTIAL,
    PASS,
    Baseline,
    judge,
)

ROOT = Path(__file__).resolve().parents[1]
N = 164


def _tasks(passing: int, n: int = N, offset: int = 0) -> dict[str, bool]:
    """n tasks, the ``passing`` ones starting at ``offset`` pass (wrapping around)."""
    wins = {(offset + i) % n for i in range(passing)}
    return {f"HumanEval/{i}": i in wins for i in range(n)}


def _pct(passed: dict[str, bool]) -> float:
    return round(100.0 * sum(passed.values()) / len(passed), 2)


def _ref(value: float | None, tol: float = 5.0) -> Reference:
    return Reference("bench-x", "humaneval", value, None, tol, "published: test")


def _baseline(passed: dict[str, bool], partial: bool = False) -> Baseline:
    return Baseline(run_id="s1/host/bench-x/humaneval", fingerprint="f" * 16,
                    plus_pass_at_1=_pct(passed), n_tasks=len(passed), partial=partial,
                    passed=passed)


def _judge(now: dict[str, bool], ref: Reference, base: Baseline | None, **kw: object):
    return judge(_pct(now), now, ref, base, **kw)  # type: ignore[arg-type]


def test_pass_unchanged_against_reference_and_baseline() -> None:
    now = _tasks(132)
    outcome = _judge(now, _ref(80.49, 0.0), _baseline(now))
    assert outcome.status == PASS
    assert outcome.ok
    assert not outcome.flagged
    assert outcome.paired is not None
    assert (outcome.paired.b, outcome.paired.c) == (0, 0)
    assert outcome.paired.p_value == 1.0


def test_fail_by_tolerance() -> None:
    now = _tasks(120)  # 73.17 % < 80.49 - 5
    outcome = _judge(now, _ref(80.49), None)
    assert outcome.status == FAIL_TOLERANCE
    assert not outcome.ok
    assert "below reference - tolerance = 75.49%" in outcome.message
    assert outcome.delta_pp == pytest.approx(-7.32)


def test_exactly_at_the_floor_passes() -> None:
    now = _tasks(124)  # 75.61
    assert _judge(now, _ref(80.61), None).status == PASS


def test_fail_by_significant_drop_inside_the_tolerance() -> None:
    base = _tasks(132)
    now = dict(base)
    for task in [t for t, ok in base.items() if ok][:6]:  # 6 pass->fail, 0 fail->pass
        now[task] = False
    outcome = _judge(now, _ref(80.49, 5.0), _baseline(base))
    assert _pct(now) >= 80.49 - 5.0  # inside the tolerance ...
    assert outcome.status == FAIL_DROP
    assert not outcome.ok
    assert outcome.paired is not None
    assert outcome.paired.b == 6
    assert outcome.paired.p_value == pytest.approx(2 / 2**6)
    assert "HumanEval/0" in outcome.message
    assert "pass->fail" in outcome.message


def test_insignificant_wobble_passes_and_lists_the_flips() -> None:
    base = _tasks(132)
    now = dict(base)
    now["HumanEval/0"], now["HumanEval/1"] = False, False  # 2 regressions
    now["HumanEval/160"] = True  # 1 fix (task 160 failed before)
    assert base["HumanEval/160"] is False
    outcome = _judge(now, _ref(80.49, 5.0), _baseline(base))
    assert outcome.status == PASS
    assert outcome.paired is not None
    assert outcome.paired.regressed == ("HumanEval/0", "HumanEval/1")
    assert outcome.paired.fixed == ("HumanEval/160",)
    assert "not significant" in outcome.message


def test_five_one_sided_flips_are_not_significant_at_005() -> None:
    base = _tasks(132)
    now = dict(base)
    for task in [t for t, ok in base.items() if ok][:5]:
        now[task] = False
    assert _judge(now, _ref(None), _baseline(base)).status == PASS


def test_flagged_rise_beyond_the_tolerance() -> None:
    now = _tasks(150)  # 91.46 > 80.49 + 5
    outcome = _judge(now, _ref(80.49), None)
    assert outcome.status == FLAGGED_RISE
    assert outcome.ok
    assert outcome.flagged
    assert "flagged for review" in outcome.message


def test_flagged_significant_rise_against_the_baseline() -> None:
    base = _tasks(100)
    now = _tasks(110)  # 10 more tasks pass, none regress
    outcome = _judge(now, _ref(None), _baseline(base))
    assert outcome.status == FLAGGED_RISE
    assert outcome.ok
    assert outcome.paired is not None
    assert outcome.paired.c == 10


def test_no_baseline_and_no_reference() -> None:
    outcome = _judge(_tasks(80), _ref(None), None)
    assert outcome.status == NO_BASELINE
    assert outcome.ok
    assert "--bench-update-baseline" in outcome.message


def test_baseline_stands_in_for_a_missing_reference() -> None:
    base = _tasks(132)
    now = _tasks(120)  # 12 fewer, beyond the 5 pp tolerance
    outcome = _judge(now, _ref(None), _baseline(base))
    assert outcome.status == FAIL_TOLERANCE
    assert outcome.reference == pytest.approx(80.49)
    assert outcome.reference_source.startswith("local baseline: run s1/host/bench-x")


def test_partial_run_is_only_compared_task_by_task() -> None:
    base = _tasks(132)
    now = {t: False for t in list(base)[:40]}  # a garbage prompt: every task fails
    assert _judge(now, _ref(80.49, 0.0), None, partial=True).status == PARTIAL
    outcome = _judge(now, _ref(80.49, 0.0), _baseline(base), partial=True)
    assert outcome.status == FAIL_DROP
    assert outcome.paired is not None
    assert outcome.paired.n_common == 40
    unchanged = {t: base[t] for t in list(base)[:40]}
    assert _judge(unchanged, _ref(80.49, 0.0), _baseline(base), partial=True).status == PASS


def test_alpha_is_configurable() -> None:
    base = _tasks(132)
    now = dict(base)
    for task in [t for t, ok in base.items() if ok][:6]:
        now[task] = False
    assert _judge(now, _ref(None, 50.0), _baseline(base), alpha=0.01).status == PASS
    assert _judge(now, _ref(None, 50.0), _baseline(base), alpha=0.05).status == FAIL_DROP


# ------------------------------------------------------------------ reference file


def test_project_reference_file_loads_with_provenance() -> None:
    refs = load_references(ROOT / "reference-scores.json")
    canary = refs.for_profile("bench-canary", "humaneval", 5.0)
    assert canary.plus_pass_at_1 == pytest.approx(80.49)
    assert canary.tolerance_pp == 0.0  # the profile's own tolerance wins over the option
    assert canary.provenance_kind == "designed"
    qwen = refs.for_profile("bench-qwen3-coder", "humaneval", 3.0)
    assert qwen.plus_pass_at_1 is None
    assert qwen.tolerance_pp == 3.0
    published = {p.model: p for p in refs.published}
    assert published["GPT-4o (2024-08)"].scores["humaneval_plus"] == 87.2
    assert published["Claude Sonnet 4"].scores["humaneval_plus"] is None
    for entry in refs.published_json():
        assert entry["source"], entry


def _write(tmp_path: Path, profiles: dict[str, object]) -> Path:
    path = tmp_path / "refs.json"
    path.write_text(json.dumps({"metadata": {}, "models": {}, "profiles": profiles}))
    return path


@pytest.mark.parametrize(("entry", "match"), [
    ({"humaneval_plus": 180}, "not a percentage"),
    ({"humaneval_plus": "80"}, "not a percentage"),
    ({"provenance": {"kind": "guess"}}, "kind 'guess' is unknown"),
    ({"provenance": {"kind": "published"}}, "needs its source"),
    ({"provenance": {"kind": "local baseline", "run_id": "x"}}, "run_id and fingerprint"),
])
def test_bad_reference_entries_name_the_profile_and_fix(tmp_path: Path, entry: dict[str, object],
                                                         match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        load_references(_write(tmp_path, {"bench-x": entry}))
    assert "bench-x" in str(info.value)
    assert "fix:" in str(info.value)


def test_local_baseline_provenance_text(tmp_path: Path) -> None:
    refs = load_references(_write(tmp_path, {"bench-x": {
        "humaneval_plus": 50.0, "provenance": {"kind": "local baseline", "run_id": "r1",
                                               "fingerprint": "abcdef0123456789"}}}))
    ref = refs.for_profile("bench-x", "humaneval")
    assert ref.provenance == "local baseline: run r1, fingerprint abcdef012345"


def test_a_dataset_can_have_its_own_provenance(tmp_path) -> None:
    import json as _json

    from plugin.gate.references import load_references

    path = tmp_path / "refs.json"
    path.write_text(_json.dumps({"profiles": {"bench-s": {
        "humaneval_plus": 0.0, "mbpp_plus": 0.0, "tolerance_pp": 0.0,
        "provenance": {"kind": "designed", "source": "0/164 HumanEval+"},
        "provenance_by_dataset": {"mbpp": "0/378 MBPP+ by the same argument"}}}}))
    refs = load_references(path)
    assert refs.for_profile("bench-s", "humaneval").provenance == "designed: 0/164 HumanEval+"
    assert refs.for_profile("bench-s", "mbpp").provenance == "0/378 MBPP+ by the same argument"
    path.write_text(_json.dumps({"profiles": {"bench-s": {
        "provenance_by_dataset": {"apps": "x"}}}}))
    with pytest.raises(ConfigError, match=r"provenance_by_dataset\.apps: unknown dataset"):
        load_references(path)
