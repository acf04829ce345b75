"""The pytest plugin, driven through pytester: options, listing, ids, errors, skips."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plugin.config import settings as S

ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["pytester"]

CONF = """\
[DEFAULT]
MODELS_DIR=models
CPU_IMAGE=local/llama.cpp:server

[bench-alpha-q4]
NAME=Alpha Q4
MODEL=alpha-Q4_K_M.gguf
CTX_SIZE=2048
N_GPU_LAYERS=0

[bench-beta]
NAME=Beta
MODEL=beta.gguf
CTX_SIZE=2048
N_GPU_LAYERS=0

[production-only]
NAME=Not a benchmark
MODEL=prod.gguf
CTX_SIZE=2048
"""

BENCH_TEST = """\
import pytest
pytestmark = pytest.mark.bench_dataset("humaneval")

def test_profile_name(bench_profile):
    assert bench_profile.name.startswith("bench-")

def test_needs_server(llama_server):
    pass
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # Inner runs are subprocesses (an in-process run would unload modules such as numpy
    # that later tests need); they find the plugin package through PYTHONPATH.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\n")
    pytester.makeconftest('pytest_plugins = ["plugin.pytest_plugin"]\n')
    (pytester.path / "models.conf").write_text(CONF, encoding="utf-8")
    (pytester.path / "reference-scores.json").write_text(
        json.dumps({"metadata": {}, "models": {}, "profiles": {}}), encoding="utf-8")
    bench = pytester.mkdir("bench_tests")
    (bench / "test_bench.py").write_text(BENCH_TEST, encoding="utf-8")
    return pytester


def test_help_lists_every_bench_option(project):
    result = project.runpytest_subprocess("--help")
    lines = [f"*{s.option}*" for s in S.SETTINGS]
    result.stdout.fnmatch_lines(["*llama.cpp benchmark harness*", *lines])
    result.stdout.fnmatch_lines(["*[env BENCH_HEALTH_TIMEOUT, ini bench_health_timeout]*"])


def test_bench_list_shows_bench_profiles_only(project):
    result = project.runpytest_subprocess("bench_tests", "--bench-list")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["profile*ctx*gpus*mode*tasks*image*exists*model*",
                                 "bench-alpha-q4*2048*cpu*chat*all*local/llama.cpp:server*"
                                 "MISSING*",
                                 "bench-beta*"])
    assert "production-only" not in result.stdout.str()


def test_ids_are_profile_names_and_k_selects(project):
    result = project.runpytest_subprocess("bench_tests", "-k", "q4 and profile_name",
                                          "--collect-only",
                               "-q")
    result.stdout.fnmatch_lines(["bench_tests/test_bench.py::test_profile_name[bench-alpha-q4]",
                                 "1/4 tests collected (3 deselected)*"])


def test_missing_model_skips_with_the_fix(project):
    result = project.runpytest_subprocess("bench_tests", "-k", "needs_server and beta", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*model file not found*beta.gguf*BENCH_MODELS_DIR*"
                                 "models.conf:13*"])


def test_malformed_conf_is_a_usage_error_with_file_line(project):
    (project.path / "models.conf").write_text(CONF + "\n[bench-gamma]\nNAME=G\n",
                                              encoding="utf-8")
    result = project.runpytest_subprocess("bench_tests", "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*models.conf:22: profile ?bench-gamma?: has no MODEL*",
                                 "*fix: add MODEL=*"])


def test_bad_option_value_names_the_flag(project):
    result = project.runpytest_subprocess("bench_tests", "--bench-health-timeout=soon",
                                          "--collect-only")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--bench-health-timeout='soon' is invalid*"])


def test_option_resolution_cli_then_env_then_ini(project, monkeypatch):
    project.makeini("[pytest]\nbench_max_tokens = 111\nbench_cpu_image = from/ini\n")
    project.makepyfile(test_probe="""
        def test_probe(bench_state):
            p = bench_state.conf.profiles["bench-beta"]
            print("RESOLVED", p.max_tokens, p.image)
    """)
    monkeypatch.setenv("BENCH_CPU_IMAGE", "from/env")
    result = project.runpytest_subprocess("test_probe.py", "-s", "--bench-max-tokens=222")
    result.stdout.fnmatch_lines(["*RESOLVED 222 from/env*"])
    monkeypatch.delenv("BENCH_CPU_IMAGE")
    result = project.runpytest_subprocess("test_probe.py", "-s")
    result.stdout.fnmatch_lines(["*RESOLVED 111 from/ini*"])


def test_project_bench_list_names_all_bench_profiles():
    """The project's own models.conf, as the README shows it."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pytest", "bench_tests", "--bench-list"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    listed = {line.split()[0] for line in out.splitlines()[2:] if line.strip()}
    assert listed == {"bench-glm-flash-q4", "bench-glm-flash", "bench-gpt-oss-120b",
                      "bench-qwen3-coder-q5", "bench-qwen3-coder", "bench-qwen3-coder-q6k",
                      "bench-smoke", "bench-canary", "bench-canary-think",
                      "bench-gemma3-270m"}


def test_project_k_qwen3_collects_the_three_qwen3_profiles():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "pytest", "bench_tests", "-k", "qwen3",
                          "--collect-only", "-q"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    ids = {line.split("[")[1].rstrip("]") for line in out.splitlines() if "::" in line}
    assert ids == {"bench-qwen3-coder", "bench-qwen3-coder-q5", "bench-qwen3-coder-q6k"}


# --------------------------------------------------------------------------- gate mode


def test_missing_model_is_an_error_in_gate_mode(project):
    result = project.runpytest_subprocess("bench_tests", "-k", "needs_server and beta",
                                          "--bench-strict")
    result.assert_outcomes(errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*model file not found*beta.gguf*models.conf:13*gate mode*"])
    assert "def llama_server" not in result.stdout.str()  # the reason, not fixture source


@pytest.mark.parametrize(("env", "outcome"), [
    ({"CI": "true"}, "errors"), ({"CI": "true", "BENCH_STRICT": "0"}, "skipped")])
def test_gate_mode_is_on_by_default_in_ci(project, monkeypatch, env, outcome):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = project.runpytest_subprocess("bench_tests", "-k", "needs_server and beta")
    result.assert_outcomes(**{outcome: 1})


def test_gate_mode_from_the_ini_file(project):
    project.makeini("[pytest]\naddopts = -p no:cacheprovider\nbench_strict = true\n")
    result = project.runpytest_subprocess("bench_tests", "-k", "needs_server and beta")
    result.assert_outcomes(errors=1)


@pytest.mark.parametrize("strict", [False, True])
def test_every_selected_profile_without_a_score_is_listed_with_its_reason(project, strict):
    """Terminal, REPORT.md, summary.json and report.html name the profiles that got no
    score; in gate mode a run where none got one exits non-zero."""
    result = project.runpytest_subprocess(
        "bench_tests", "-k", "needs_server", *(("--bench-strict",) if strict else ()))
    result.assert_outcomes(**({"errors": 2} if strict else {"skipped": 2}))
    assert result.ret == (pytest.ExitCode.TESTS_FAILED if strict else pytest.ExitCode.OK)
    result.stdout.fnmatch_lines([
        "*selected profiles without a score*",
        "*bench-alpha-q4 (humaneval): *: model file not found*alpha-Q4_K_M.gguf*",
        "*bench-beta (humaneval): *: model file not found*beta.gguf*"])
    reports = project.path / "reports"
    summary = json.loads((reports / "summary.json").read_text())
    assert [(u["profile"], u["dataset"], u["outcome"]) for u in summary["unscored"]] == [
        ("bench-alpha-q4", "humaneval", "error" if strict else "skipped"),
        ("bench-beta", "humaneval", "error" if strict else "skipped")]
    assert all("model file not found" in u["reason"] for u in summary["unscored"])
    markdown = (reports / "REPORT.md").read_text()
    assert "## Selected Profiles Without a Score" in markdown
    assert "**bench-beta** (humaneval)" in markdown
    page = (reports / "report.html").read_text()
    assert 'id="bench-unscored"' in page
    assert "beta.gguf" in page


def test_a_k_that_selects_no_profile_names_the_profiles(project):
    result = project.runpytest_subprocess("bench_tests", "-k", "qwen4")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    result.stdout.fnmatch_lines(["*no benchmark test selected*bench profiles of*models.conf "
                                 "are: bench-alpha-q4, bench-beta*--bench-list*"])


def test_a_base_url_that_refuses_connections_fails_fast_and_blames_the_option(project):
    """Nothing listens on 127.0.0.1:9: about 30 s of refused connections end the start,
    not the 600 s health timeout; the error names the option the URL came from."""
    (project.path / "bench_tests" / "test_get.py").write_text(
        "import pytest\npytestmark = pytest.mark.bench_dataset('humaneval')\n\n"
        "def test_get(llama_server):\n    llama_server.get()\n", encoding="utf-8")
    result = project.runpytest_subprocess("bench_tests", "-k", "test_get and alpha",
                                          "--bench-base-url", "http://127.0.0.1:9")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*external server http://127.0.0.1:9 refused every connection for 3? s*",
        "*correct BASE_URL (command line --bench-base-url)*"])
    assert "models.conf:" not in result.stdout.str().split("refused every connection")[1]
    assert result.duration < 300  # the health timeout (600 s) was not waited out


def test_an_image_option_is_blamed_not_models_conf(project, monkeypatch):
    from plugin.config.models_conf import load_models_conf
    from plugin.config.profile import Defaults

    conf = load_models_conf(project.path / "models.conf", Defaults(
        cpu_image="typo/image", origins={"cpu-image": "environment BENCH_CPU_IMAGE"}))
    assert conf.profiles["bench-beta"].where("CPU_IMAGE") == "environment BENCH_CPU_IMAGE"
    assert conf.profiles["bench-beta"].where("MODEL").endswith("models.conf:13")
