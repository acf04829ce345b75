"""Evaluation in the real sandbox image: fidelity, determinism, published numbers, evalplus
agreement, containment of hostile programs.

Needs Docker and the image ``$SANDBOX_IMAGE`` (default ``local/bench-sandbox:latest``, built
by ``docker/sandbox/build-debian.sh``). Expected outputs are computed once into a cache
next to pytest's base temp dir (``/tmp/pytest-of-<user>/bench-oracle-cache``), shared by
xdist workers and later sessions (a file lock guards each entry; entries are keyed by the
image id, so a rebuilt image recomputes). Runtime on 2 cores: ~9 min with that cache,
~11 min without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from plugin import evaluation
from plugin.datasets import SHARED_DATASETS_DIR, Dataset, load_dataset
from plugin.evaluation import EvalResult, evaluate_samples, load_samples

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("SANDBOX_IMAGE", evaluation.DEFAULT_IMAGE)
PUBLISHED = SHARED_DATASETS_DIR / "published-samples"
# Wall-time bound for the hostile set (see docs/EVALUATION.md, "Containment").
HOSTILE_BOUND_S = 420.0


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    client = evaluation.docker_client_from_env()
    try:
        client.images.get(IMAGE)
    except Exception:
        pytest.fail(f"sandbox image {IMAGE} missing: build it with docker/sandbox/build-debian.sh")
    yield client
    mine = client.containers.list(all=True, filters={
        "label": ["bench.role=sandbox", f"bench.pid={os.getpid()}"]})
    for container in mine:
        container.remove(force=True)
    assert not mine, f"sandbox containers left behind: {[c.name for c in mine]}"


@pytest.fixture(scope="session")
def oracle_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by xdist workers; ensure_oracle locks each entry while computing it."""
    path = tmp_path_factory.getbasetemp().parent / "bench-oracle-cache"
    path.mkdir(exist_ok=True)
    return path


def _evaluate(data: Dataset, solutions: dict[str, str], out: Path, client: Any,
              cache: Path, **kwargs: Any) -> EvalResult:
    return evaluate_samples(data, solutions, out, image=IMAGE, docker_client=client,
                            cache_dir=cache, **kwargs)


def _canonical(data: Dataset) -> dict[str, str]:
    return {t: task.canonical_program for t, task in data.tasks.items()}


def _statuses(result: EvalResult) -> dict[str, tuple[str, str]]:
    return {t: (v.base_status, v.plus_status) for t, v in result.verdicts.items()}


def _not_passing(result: EvalResult) -> dict[str, tuple[str, str]]:
    return {t: s for t, s in _statuses(result).items() if s != ("pass", "pass")}


# ------------------------------------------------------------------ canonical solutions
def test_humaneval_canonical_164_of_164_three_times(docker_client: Any, oracle_cache: Path,
                                                    tmp_path: Path) -> None:
    data = load_dataset("humaneval")
    runs = [_evaluate(data, _canonical(data), tmp_path / f"run{i}", docker_client,
                      oracle_cache) for i in range(3)]
    for number, result in enumerate(runs):
        assert _not_passing(result) == {}, f"run {number}: canonical solutions failed"
        assert result.base_pass_at_1 == 1.0
        assert result.plus_pass_at_1 == 1.0
        assert result.n_judged == 164  # fresh out_dir: nothing resumed
    first = (tmp_path / "run0" / "eval_results.json").read_text()
    for number in (1, 2):
        other = (tmp_path / f"run{number}" / "eval_results.json").read_text()
        assert json.loads(other)["eval"] == json.loads(first)["eval"], f"run {number} differs"
    print("canonical HumanEval+ wall s:", [round(r.wall_s, 1) for r in runs])


def test_mbpp_canonical_378_of_378(docker_client: Any, oracle_cache: Path,
                                   tmp_path: Path) -> None:
    data = load_dataset("mbpp")
    result = _evaluate(data, _canonical(data), tmp_path / "out", docker_client, oracle_cache)
    assert result.n_tasks == 378
    assert _not_passing(result) == {}
    print("canonical MBPP+ wall s:", round(result.wall_s, 1))


# ------------------------------------------------------------------- published samples
PUBLISHED_CASES = [
    ("qwen2.5-coder-7b-base", "generated_eval_results.json", 61.6, 53.0),
    ("evalplus-fork-meta-llama--Meta-Llama-3-8B-Instruct", "eval_results.json", 64.0, 57.3),
]


@pytest.mark.parametrize(("folder", "verdict_file", "base", "plus"), PUBLISHED_CASES,
                         ids=["qwen2.5-coder-7b", "llama-3-8b-instruct"])
def test_published_samples_rescore_to_published_numbers(
        docker_client: Any, oracle_cache: Path, tmp_path: Path, folder: str,
        verdict_file: str, base: float, plus: float) -> None:
    data = load_dataset("humaneval")
    solutions = load_samples(PUBLISHED / folder / "samples.jsonl", data)
    result = _evaluate(data, solutions, tmp_path / "out", docker_client, oracle_cache)
    assert round(100 * result.base_pass_at_1, 1) == base
    assert round(100 * result.plus_pass_at_1, 1) == plus
    published = json.loads((PUBLISHED / folder / verdict_file).read_text())["eval"]
    theirs = {t: (e[0]["base_status"], e[0]["plus_status"]) for t, e in published.items()}
    ours = _statuses(result)
    disagreements = {t: (theirs[t], ours[t]) for t in theirs if theirs[t] != ours[t]}
    assert disagreements == {}


# --------------------------------------------------------- mixed set vs evalplus.evaluate
MIXED = {
    "HumanEval/0": "def has_close_elements(numbers, threshold):\n    return False\n",
    "HumanEval/1": "def separate_paren_groups(paren_string):\n    raise ValueError('boom')\n",
    "HumanEval/2": "def truncate_number(number):\n    return round(number % 1.0, 2)\n",
    "HumanEval/3": "def below_zero(operations:\n    return False\n",  # syntax error
    "HumanEval/4": "def mean_absolute_deviation(numbers):\n    while True:\n        pass\n",
    "HumanEval/6": textwrap.dedent("""\
        import signal
        def parse_nested_parens(paren_string):
            signal.signal(signal.SIGALRM, signal.SIG_IGN)  # the per-test alarm is ignored
            while True:
                pass
        """),
    "HumanEval/7": "def filter_by_substring(strings, substring):\n"
                   "    print('noise' * 1000)\n"
                   "    return [s for s in strings if substring in s]\n",
    "HumanEval/23": "def strlen(string):\n    return len(string) if len(string) < 10 else 0\n",
    "HumanEval/28": "def concatenate(strings):\n    exit(0)\n",
    "HumanEval/42": "def incr_list(l):\n    return [x + 1 for x in l][:2]\n",
}


def _run_evalplus(samples: Path, dataset_file: Path, home: Path,
                  dataset: str = "humaneval") -> dict[str, Any]:
    """evalplus.evaluate 0.3.1 itself, with its caches in a temporary HOME."""
    mini = dataset == "humaneval"
    code = ("import sys; from evalplus.evaluate import evaluate; "
            f"evaluate({dataset!r}, samples=sys.argv[1], mini={mini}, i_just_wanna_run=True, "
            "parallel=2, min_time_limit=float(sys.argv[2]), "
            "gt_time_limit_factor=float(sys.argv[3]))")
    limits = evaluation.Limits()
    override = "HUMANEVAL_OVERRIDE_PATH" if dataset == "humaneval" else "MBPP_OVERRIDE_PATH"
    env = {**os.environ, override: str(dataset_file), "HOME": str(home),
           "XDG_CACHE_HOME": str(home / ".cache")}
    done = subprocess.run(
        [sys.executable, "-c", code, str(samples), str(limits.min_time_limit),
         str(limits.gt_time_limit_factor)],
        capture_output=True, text=True, env=env, cwd=home, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result_file = Path(str(samples).replace(".jsonl", "_eval_results.json"))
    return dict(json.loads(result_file.read_text()))


def test_mixed_set_matches_evalplus_evaluate(docker_client: Any, oracle_cache: Path,
                                             tmp_path: Path) -> None:
    """Correct, wrong, timing-out, crashing and syntax-error programs: same verdicts and
    failing tests as evalplus.evaluate on the same file, except HumanEval/32 (the canonical
    find_zero), which evalplus 0.3.1 wrongly fails and the harness passes (PR 241 fix)."""
    data = load_dataset("humaneval", mini=True)
    samples = tmp_path / "evalplus" / "samples.jsonl"
    samples.parent.mkdir()
    with samples.open("w") as handle:
        for task_id, task in data.tasks.items():
            program = MIXED.get(task_id, task.canonical_program)
            handle.write(json.dumps({"task_id": task_id, "solution": program}) + "\n")
    env = {**os.environ, "BENCH_CACHE_DIR": str(oracle_cache)}
    done = subprocess.run(
        [sys.executable, "-m", "plugin", "evaluate", "--dataset", "humaneval", "--mini",
         "--samples", str(samples), "--out", str(tmp_path / "ours"), "--image", IMAGE],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"base_pass_at_1", "plus_pass_at_1", "n_tasks", "wall_s"} <= set(summary)
    ours = json.loads((tmp_path / "ours" / "eval_results.json").read_text())["eval"]
    (tmp_path / "home").mkdir()
    theirs = _run_evalplus(samples, data.path, tmp_path / "home")["eval"]

    fields = ("base_status", "plus_status", "base_fail_tests", "plus_fail_tests")
    differences = {t: ({f: theirs[t][0][f] for f in fields}, {f: ours[t][0][f] for f in fields})
                   for t in theirs if any(theirs[t][0][f] != ours[t][0][f] for f in fields)}
    find_zero = differences.pop("HumanEval/32")
    assert (find_zero[0]["base_status"], find_zero[0]["plus_status"]) == ("fail", "fail")
    assert (find_zero[1]["base_status"], find_zero[1]["plus_status"]) == ("pass", "pass")
    assert differences == {}
    # The set really is mixed: every kind of verdict occurs.
    statuses = {(e[0]["base_status"], e[0]["plus_status"]) for e in ours.values()}
    assert {("pass", "pass"), ("fail", "fail"), ("timeout", "timeout")} <= statuses
    assert ("pass", "fail") in statuses  # passes the base tests only


MBPP_MIXED = {
    # special oracles: right answers that differ from the reference output
    "Mbpp/581": "import math\ndef surface_Area(b, h):\n"
                "    return round(b * b + 2 * b * math.sqrt((b / 2) ** 2 + h ** 2))\n",
    "Mbpp/558": "def digit_distance_nums(a, b):\n    x, y = str(a), str(b)\n"
                "    n = max(len(x), len(y))\n"
                "    return sum(abs(int(p) - int(q)) for p, q in zip(x.zfill(n), y.zfill(n)))\n",
    "Mbpp/2": "def similar_elements(a, b):\n"
              "    return tuple(sorted(set(a) & set(b), reverse=True))\n",
    "Mbpp/737": "import re\ndef check_str(s):\n    return bool(re.match('^[aeiouAEIOU]', s))\n",
    # wrong answers; 124 and 252 have failing inputs EvalPlus serializes specially
    "Mbpp/769": "def Diff(a, b):\n    return list(set(a) - set(b))\n",
    "Mbpp/252": "def convert(numbers):\n    return (abs(numbers), 0.0)\n",
    "Mbpp/124": "def angle_complex(a, b):\n    return 0.0\n",
    "Mbpp/63": "def max_difference(test_list):\n    raise KeyError(test_list)\n",
    "Mbpp/75": "def find_tuples(test_list, K)\n    return []\n",
    "Mbpp/106": "def add_lists(test_list, test_tup):\n    while True:\n        pass\n",
}
MBPP_CANONICAL = ("Mbpp/722", "Mbpp/615", "Mbpp/580", "Mbpp/3")


def test_mbpp_mixed_set_matches_evalplus_evaluate(docker_client: Any, oracle_cache: Path,
                                                  tmp_path: Path) -> None:
    """MBPP+ special oracles, set/not-None comparisons and the MBPP+ (de)serialization of
    failing inputs agree with evalplus.evaluate (run on a file holding just these tasks)."""
    import gzip

    from plugin.datasets import iter_records

    full = load_dataset("mbpp")
    ids = [*MBPP_MIXED, *MBPP_CANONICAL]
    data = replace(full, tasks={t: full.tasks[t] for t in full.tasks if t in ids})
    subset_file = tmp_path / "MbppPlus-subset.jsonl"
    with subset_file.open("w") as handle:
        for record in iter_records(gzip.decompress(full.path.read_bytes())):
            if record["task_id"] in ids:
                handle.write(json.dumps(record) + "\n")
    solutions = {t: MBPP_MIXED.get(t, data.tasks[t].canonical_program) for t in data.tasks}
    samples = tmp_path / "evalplus" / "samples.jsonl"
    samples.parent.mkdir()
    samples.write_text("".join(json.dumps({"task_id": t, "solution": p}) + "\n"
                               for t, p in solutions.items()))
    ours = _evaluate(data, solutions, tmp_path / "ours", docker_client, oracle_cache)
    (tmp_path / "home").mkdir()
    theirs = _run_evalplus(samples, subset_file, tmp_path / "home", dataset="mbpp")["eval"]
    ours_json = json.loads((tmp_path / "ours" / "eval_results.json").read_text())["eval"]
    fields = ("base_status", "plus_status", "base_fail_tests", "plus_fail_tests")
    differences = {t: ({f: theirs[t][0][f] for f in fields},
                       {f: ours_json[t][0][f] for f in fields})
                   for t in theirs if any(theirs[t][0][f] != ours_json[t][0][f] for f in fields)}
    assert differences == {}
    assert sorted(theirs) == sorted(ours_json)
    passed = {t for t, v in ours.verdicts.items() if v.plus_passed}
    assert passed == {"Mbpp/581", "Mbpp/558", "Mbpp/2", "Mbpp/737", *MBPP_CANONICAL}


# ------------------------------------------------------------------------ containment
def _hostile_programs(data: Dataset, canary: Path, secret: str) -> dict[str, str]:
    """Programs that attack the sandbox. Each one that detects a breach returns the right
    answer (so a breach shows up as a pass); otherwise it fails."""
    tasks = list(data.tasks.values())

    def wrap(index: int, attack: str) -> tuple[str, str]:
        task = tasks[index]
        body = textwrap.indent(textwrap.dedent(attack), "    ")
        program = (task.canonical_program + f"\n_real = {task.entry_point}\n"
                   f"def {task.entry_point}(*args):\n    breached = False\n{body}\n"
                   "    if breached:\n        return _real(*args)\n"
                   "    raise RuntimeError('contained')\n")
        return task.task_id, program

    attacks = [
        # shell commands, bypassing reliability_guard (posix.system is not disabled)
        f"""
        import posix
        posix.system("rm -rf {canary} /tmp/* 2>/dev/null; echo owned > {canary}; "
                     "echo owned > /owned; kill -9 -1")
        breached = posix.access("{canary}", posix.F_OK) or posix.access("/owned", posix.F_OK)
        """,
        # delete / write files outside the work dir (read-only root and mounts)
        """
        import io, posix
        for path in ("/owned", "/etc/owned", "/opt/bench/bench_sandbox/owned",
                     "/oracle/owned", "/oracle/oracle.json", "/input/owned"):
            try:
                with io.open(path, "w") as handle:
                    handle.write("owned")
                breached = True
            except OSError:
                pass
        for path in ("/opt/bench/bench_sandbox/__main__.py", "/oracle/oracle.json",
                     "/input/solutions.jsonl", "/usr/bin/python3"):
            try:
                posix.unlink(path)
                breached = True
            except OSError:
                pass
        """,
        # network access
        """
        import socket
        for host, port in (("1.1.1.1", 53), ("8.8.8.8", 443), ("172.17.0.1", 2375),
                           ("host.docker.internal", 80), ("pypi.org", 443)):
            try:
                socket.create_connection((host, port), timeout=1).close()
                breached = True
            except OSError:
                pass
        """,
        # the host's environment (a secret set in the pytest process)
        f"""
        import io, posix
        breached = any(b"{secret}" in value for value in posix.environ.values())
        for pid in posix.listdir("/proc"):
            try:
                with io.open("/proc/" + pid + "/environ", "rb") as handle:
                    breached = breached or b"{secret}" in handle.read()
            except OSError:
                pass
        """,
        # forge a passing verdict on the runner's stdout (the result channel)
        """
        import io, json
        keys = [json.loads(l)["key"] for l in io.open("/input/solutions.jsonl")]
        lines = "".join(json.dumps({"event": "verdict", "key": k,
                                    "task_id": json.loads(l)["task_id"],
                                    "base_status": "pass", "plus_status": "pass",
                                    "base_fail_tests": [], "plus_fail_tests": []}) + "\\n"
                        for k, l in zip(keys, io.open("/input/solutions.jsonl")))
        for target in ("/proc/1/fd/1", "/proc/1/fd/2", "/dev/stdout"):
            try:
                with io.open(target, "w") as handle:
                    handle.write(lines)
            except OSError:
                pass
        """,
        # the Docker socket
        """
        import posix
        breached = posix.access("/var/run/docker.sock", posix.F_OK)
        """,
        # fork bomb that survives the per-test alarm
        """
        import posix
        while True:
            try:
                posix.fork()
            except BaseException:
                pass
        """,
        # memory bomb
        """
        hog = []
        while True:
            hog.append(bytearray(1 << 26))
        """,
        # infinite loop, and one that ignores the per-test alarm
        """
        while True:
            pass
        """,
        """
        import signal
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            pass
        """,
        # kill the parent (the checker worker), then everything it can reach
        """
        import posix
        posix.kill(posix.getppid(), 9)
        """,
        """
        import posix
        posix.kill(-1, 9)
        """,
    ]
    return dict(wrap(index, attack) for index, attack in enumerate(attacks))


def _tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        digest.update(str(item.relative_to(path)).encode())
        if item.is_file():
            digest.update(item.read_bytes())
    return digest.hexdigest()


def test_hostile_programs_are_contained(docker_client: Any, oracle_cache: Path,
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_dataset("humaneval", mini=True)
    hostile_ids = list(data.tasks)[:12]
    innocent_ids = list(data.tasks)[12:24]
    subset = replace(data, tasks={t: data.tasks[t] for t in hostile_ids + innocent_ids})
    canary = tmp_path / "canary.txt"
    canary.write_text("canary " + secrets.token_hex(8))
    before = canary.read_text()
    secret = "SECRET_" + secrets.token_hex(12)
    monkeypatch.setenv("BENCH_HOST_SECRET", secret)
    solutions = _hostile_programs(subset, canary, secret)
    assert sorted(solutions) == sorted(hostile_ids)
    solutions.update({t: subset.tasks[t].canonical_program for t in innocent_ids})
    bystander = subprocess.Popen(["sleep", "900"])
    _evaluate(subset, {t: subset.tasks[t].canonical_program for t in innocent_ids},
              tmp_path / "warmup", docker_client, oracle_cache)  # oracle computed, cached
    oracle_dir = next(p for p in oracle_cache.joinpath("oracles").iterdir()
                      if p.is_dir() and p.name.startswith("humaneval-v0.1.10-mini"))
    oracle_before = _tree_digest(oracle_dir)
    try:
        started = time.monotonic()
        result = _evaluate(subset, solutions, tmp_path / "out", docker_client, oracle_cache)
        elapsed = time.monotonic() - started
        assert bystander.poll() is None, "a host process was killed"
    finally:
        bystander.kill()
        bystander.wait()
    print(f"hostile set judged in {elapsed:.1f} s")
    assert canary.read_text() == before
    assert os.environ["BENCH_HOST_SECRET"] == secret
    assert _tree_digest(oracle_dir) == oracle_before
    assert elapsed < HOSTILE_BOUND_S
    breached = {t: result.verdicts[t] for t in hostile_ids if result.verdicts[t].plus_passed
                or result.verdicts[t].base_passed}
    assert breached == {}, "attacks that worked (their program passed)"
    bystanders = {t: _statuses(result)[t] for t in innocent_ids
                  if _statuses(result)[t] != ("pass", "pass")}
    assert bystanders == {}, "correct programs judged alongside the attacks were disturbed"
    errors = {t: result.verdicts[t].error for t in hostile_ids if result.verdicts[t].error}
    print("hostile verdicts:", {t: _statuses(result)[t] for t in hostile_ids}, errors)


def test_interrupted_cli_leaves_no_container_and_resumes(docker_client: Any,
                                                         oracle_cache: Path,
                                                         tmp_path: Path) -> None:
    """Ctrl-C mid-run: exit 130, the container is removed, judged verdicts are on disk and
    the next run judges only the rest."""
    import signal

    data = load_dataset("humaneval", mini=True)
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps({"task_id": t, "solution": x.canonical_program})
                               + "\n" for t, x in data.tasks.items()))
    cmd = [sys.executable, "-m", "plugin", "evaluate", "--dataset", "humaneval", "--mini",
           "--samples", str(samples), "--out", str(tmp_path / "out"), "--image", IMAGE]
    env = {**os.environ, "BENCH_CACHE_DIR": str(oracle_cache)}
    journal = tmp_path / "out" / "verdicts.jsonl"
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    left = docker_client.containers.list(all=True, filters={
        "label": ["bench.role=sandbox", f"bench.pid={proc.pid}"]})
    assert left == []
    judged = len(journal.read_text().splitlines())
    assert 5 <= judged < 164
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["resumed"] >= judged - 1  # a line cut short by the interrupt is redone
    assert summary["resumed"] + summary["judged"] == 164
    assert summary["plus_pass_at_1"] == 1.0


def test_missing_image_is_a_clean_cli_error(tmp_path: Path, docker_client: Any) -> None:
    samples = tmp_path / "s.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "solution": "x"}\n')
    done = subprocess.run(
        [sys.executable, "-m", "plugin", "evaluate", "--dataset", "humaneval", "--samples",
         str(samples), "--image", "local/no-such-sandbox:never"],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "docker/sandbox/build-debian.sh" in done.stderr
