"""Evaluation in the real sandbox image: fidelity, determinism, published numbers, evalplus
agreement, containment of hostile programs.

Needs Docker and the image ``$SANDBOX_IMAGE`` (default ``local/bench-sandbox:latest``, built
by ``docker/sandbox/build-debian.sh``). Expected outputs are computed once into a cache
next to pytest's base temp dir (``/tmp/pytest-of-<user>/bench-oracle-cache``), shared by
xdist workers and later sessions (a file lock guards each entry; entries are keyed by the
image id, so a rebuilt image recomputes). Runtime on 2 cores: ~9 min with that cache,
~11 min without it, before the containment set grew from 12 to 27 attacks (it alone now
takes ~5 min, ~2 min before).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import support

from plugin.containers import client as containers
from plugin.datasets import SHARED_DATASETS_DIR, Dataset, load_dataset
from plugin.evaluation.backends import DEFAULT_IMAGE
from plugin.evaluation.judging import evaluate_samples
from plugin.evaluation.plan import Limits
from plugin.evaluation.results import EvalResult
from plugin.evaluation.samples import load_samples

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("SANDBOX_IMAGE", DEFAULT_IMAGE)
PUBLISHED = SHARED_DATASETS_DIR / "published-samples"
# Wall-time bound for the hostile set (see docs/EVALUATION.md, "Containment"): 27 attacks
# and 12 correct programs took 245-308 s on 2 cores in 7 runs (load average 3-59 from
# other suites); about twice the slowest, as the bound of the 12-attack set had.
HOSTILE_BOUND_S = 600.0
# Growth of the pytest process's resident memory while the hostile set is judged (measured:
# under 1 MiB). Each output attack writes gigabytes: any path into this process shows.
RSS_GROWTH_BOUND = 64 << 20


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    client = containers.docker_client(timeout=120)
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
    limits = Limits()
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
@dataclass(frozen=True)
class _Host:
    """What only the host has: an attack that sees any of it has broken out."""

    canary: Path  # a host file the attacks try to delete or overwrite
    secret: str  # BENCH_HOST_SECRET in the pytest process's environment
    hidden: tuple[Path, ...]  # host files the attacks try to read
    digests: tuple[str, ...]  # sha256 of each one's first line: seeing one is a breach
    written: tuple[Path, ...]  # those of them this test wrote (checked unchanged)
    hostname: str
    bystander: str  # argument of a host process the attacks look for in /proc
    process: subprocess.Popen[bytes]  # that process (its environment holds the secret)


def _attacks(host: _Host) -> list[tuple[str, str]]:
    """(name, body) of each attack. A body sets ``breached`` when it sees the attack work;
    the program then returns the right answer (so a breach shows up as a pass)."""
    canary = str(host.canary)
    attacks = [
        # shell commands, bypassing reliability_guard (posix.system is not disabled)
        ("shell", f"""
        import posix
        posix.system("rm -rf {canary} /tmp/* 2>/dev/null; echo owned > {canary}; "
                     "echo owned > /owned; kill -9 -1")
        breached = posix.access("{canary}", posix.F_OK) or posix.access("/owned", posix.F_OK)
        """),
        # delete / write files outside the work dir (read-only root and mounts)
        ("write files", """
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
        """),
        # network access
        ("network", """
        import socket
        for host, port in (("1.1.1.1", 53), ("8.8.8.8", 443), ("172.17.0.1", 2375),
                           ("host.docker.internal", 80), ("pypi.org", 443)):
            try:
                socket.create_connection((host, port), timeout=1).close()
                breached = True
            except OSError:
                pass
        """),
        # the host's environment (a secret set in the pytest process)
        ("environment", f"""
        import io, posix
        breached = any(b"{host.secret}" in value for value in posix.environ.values())
        for pid in posix.listdir("/proc"):
            try:
                with io.open("/proc/" + pid + "/environ", "rb") as handle:
                    breached = breached or b"{host.secret}" in handle.read()
            except OSError:
                pass
        """),
        # forge a passing verdict on the runner's stdout (the result channel)
        ("forge verdicts", """
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
        """),
        # the Docker socket
        ("docker socket", """
        import posix
        breached = posix.access("/var/run/docker.sock", posix.F_OK)
        """),
        # fork bomb that survives the per-test alarm
        ("fork bomb", """
        import posix
        while True:
            try:
                posix.fork()
            except BaseException:
                pass
        """),
        ("memory bomb", """
        hog = []
        while True:
            hog.append(bytearray(1 << 26))
        """),
        ("cpu spin", """
        while True:
            pass
        """),
        ("cpu spin ignoring the alarm", """
        import signal
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            pass
        """),
        # kill the parent (the checker worker), then everything it can reach
        ("kill the worker", """
        import posix
        posix.kill(posix.getppid(), 9)
        """),
        ("kill everything", """
        import posix
        posix.kill(-1, 9)
        """),
        # read host files: by their path, through /proc/*/root and cwd, out of the bind
        # mounts, from the usual host mount points; list their folders; the host's name
        # and processes (UTS and PID namespaces)
        ("read host files", f"""
        import hashlib, io, posix
        wanted = {list(host.digests)!r}
        paths = {[str(p) for p in host.hidden]!r}
        pids = [pid for pid in posix.listdir("/proc") if pid.isdigit()]
        tries = []
        for path in paths:
            tries += [path, "/proc/self/cwd/../../../../../.." + path,
                      "/opt/bench/bench_sandbox/../../../.." + path, "/oracle/../.." + path,
                      "/host" + path, "/hostfs" + path, "/rootfs" + path, "/mnt" + path]
            tries += ["/proc/" + pid + "/root" + path for pid in [*pids, "self"]]
        for path in tries:
            try:
                with io.open(path, "rb") as handle:
                    first = handle.read(1 << 16).split(b"\\n", 1)[0]
                breached = breached or hashlib.sha256(first).hexdigest() in wanted
            except OSError:
                pass
        for path in paths:
            folder, name = path.rsplit("/", 1)
            try:
                breached = breached or name in posix.listdir(folder or "/")
            except OSError:
                pass
        breached = breached or posix.uname().nodename == {host.hostname!r}
        for pid in pids:
            try:
                with io.open("/proc/" + pid + "/cmdline", "rb") as handle:
                    breached = breached or {host.bystander.encode()!r} in handle.read()
            except OSError:
                pass
        """),
        # gigabytes on stdout/stderr: through print (EvalPlus keeps it in memory) and
        # straight to file descriptors 1 and 2
        ("huge output", """
        import posix, sys
        block = b"y" * (1 << 24)
        for fd in (1, 2):
            for _ in range(1 << 8):  # 4 GiB each
                try:
                    posix.write(fd, block)
                except OSError:
                    break
        line = "x" * (1 << 20)
        try:
            for number in range(1 << 13):  # 16 GiB of distinct strings
                print("%d %s" % (number, line))
                sys.stderr.write("%d %s" % (number, line))
        except MemoryError:
            pass
        """),
        # one enormous line, to every output a process can reach; the runner's stdout
        # (the verdict stream the host parses line by line) must be out of reach
        ("one enormous line", """
        import posix, stat, sys
        line = "z" * (1 << 30)  # 1 GiB, no newline
        for stream in (sys.__stdout__, sys.__stderr__, sys.stdout):
            try:
                stream.write(line)
                stream.flush()
            except (OSError, ValueError, MemoryError):
                pass
        del line
        null = posix.stat("/dev/null").st_rdev
        targets = ["/proc/1/fd/1", "/proc/1/fd/2", "/dev/console", "/dev/tty"]
        for pid in (1, posix.getppid()):
            try:
                targets += ["/proc/%d/fd/%s" % (pid, fd)
                            for fd in posix.listdir("/proc/%d/fd" % pid)]
            except OSError:
                pass
        block = b"z" * (1 << 26)
        for target in targets:
            try:
                fd = posix.open(target, posix.O_WRONLY | posix.O_NONBLOCK)
            except OSError:
                continue
            if posix.fstat(fd).st_rdev != null or not stat.S_ISCHR(posix.fstat(fd).st_mode):
                breached = True
                for _ in range(16):  # 1 GiB more on the same line
                    try:
                        posix.write(fd, block)
                    except OSError:
                        break
        """),
        # recursion bombs: Python frames until memory runs out, and C recursion until the
        # stack overflows (SIGSEGV)
        ("recursion bomb", """
        import sys
        sys.setrecursionlimit(1 << 30)
        def down(depth):
            return down(depth + 1) + 1
        down(0)
        """),
        ("C stack overflow", """
        import json, sys
        sys.setrecursionlimit(1 << 30)
        json.loads("[" * (1 << 24))
        """),
        # ctypes: libc's system() (os.system is disabled), privilege and namespace calls,
        # ptrace of the worker and the runner, "shocker" (open_by_handle_at on a bind
        # mount), then a segfault
        ("ctypes", f"""
        import ctypes, posix
        libc = ctypes.CDLL(None, use_errno=True)
        libc.system(b"rm -rf {canary}; echo owned > {canary}; echo owned > /owned")
        breached = posix.access("{canary}", posix.F_OK) or posix.access("/owned", posix.F_OK)
        breached = breached or libc.setuid(0) == 0 or libc.setgid(0) == 0
        breached = breached or libc.unshare(0x10000000) == 0  # CLONE_NEWUSER
        breached = breached or libc.unshare(0x00020000) == 0  # CLONE_NEWNS
        breached = breached or libc.mount(b"none", b"/oracle", b"tmpfs", 0, None) == 0
        breached = breached or libc.ptrace(16, posix.getppid(), None, None) == 0  # ATTACH
        breached = breached or libc.ptrace(16, 1, None, None) == 0
        handle = ctypes.create_string_buffer(
            (8).to_bytes(4, "little") + (1).to_bytes(4, "little")  # bytes, FILEID_INO32_GEN
            + (2).to_bytes(4, "little") + (0).to_bytes(4, "little"))  # inode 2: fs root
        mount = posix.open("/oracle", posix.O_RDONLY)
        breached = breached or libc.open_by_handle_at(mount, handle, 0) >= 0
        ctypes.string_at(0)
        """),
        # mmap: write through shared mappings of read-only files, the worker's and the
        # runner's memory, a mapping past the 4 GiB address-space limit
        ("mmap", """
        import mmap, posix
        for path in ("/oracle/oracle.json", "/input/solutions.jsonl",
                     "/opt/bench/bench_sandbox/runtime.py", "/usr/bin/python3"):
            for flags in (posix.O_RDWR, posix.O_RDONLY):
                try:
                    fd = posix.open(path, flags)
                except OSError:
                    continue
                try:
                    view = mmap.mmap(fd, 0, flags=mmap.MAP_SHARED,
                                     prot=mmap.PROT_READ | mmap.PROT_WRITE)
                    view[:5] = b"owned"
                    view.flush()
                    breached = True
                except (OSError, ValueError, TypeError):
                    pass
        for pid in (posix.getppid(), 1):
            try:
                posix.open("/proc/%d/mem" % pid, posix.O_RDWR)
                breached = True
            except OSError:
                pass
        try:
            mmap.mmap(-1, 1 << 36)
            breached = True
        except (OSError, MemoryError, OverflowError):
            pass
        """),
        # the classic container escapes: kernel knobs (core_pattern, modprobe, uevent
        # helper, sysrq), cgroup files (release_agent, limits), devices, mknod
        ("kernel knobs and devices", """
        import posix, stat
        for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/modprobe",
                     "/proc/sysrq-trigger", "/sys/kernel/uevent_helper",
                     "/proc/sys/vm/drop_caches", "/sys/fs/cgroup/release_agent",
                     "/sys/fs/cgroup/memory/release_agent",
                     "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max",
                     "/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max",
                     "/sys/fs/cgroup/cgroup.procs"):
            try:
                posix.close(posix.open(path, posix.O_WRONLY))
                breached = True
            except OSError:
                pass
        for device in ("/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/sda",
                       "/dev/vda", "/dev/nvme0n1", "/dev/fuse", "/dev/net/tun"):
            try:
                posix.close(posix.open(device, posix.O_RDONLY))
                breached = True
            except OSError:
                pass
        try:
            posix.mknod("/tmp/disk", stat.S_IFBLK | 0o600, posix.makedev(8, 0))
            breached = True
        except OSError:
            pass
        """),
        # privileges: capabilities, no_new_privs, root, raw sockets, /etc/shadow, su/sudo
        ("privileges", """
        import io, posix, socket
        with io.open("/proc/self/status") as handle:
            status = handle.read()
        caps = [line.split()[1] for line in status.splitlines() if line.startswith("Cap")]
        breached = any(int(value, 16) for value in caps) or "NoNewPrivs:\\t1" not in status
        breached = breached or 0 in (posix.getuid(), posix.geteuid(), posix.getgid())
        try:
            socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
            breached = True
        except OSError:
            pass
        try:
            io.open("/etc/shadow", "rb").close()
            breached = True
        except OSError:
            pass
        posix.system("su root -c 'echo owned > /tmp/rooted' </dev/null >/dev/null 2>&1; "
                     "sudo -n sh -c 'echo owned > /tmp/rooted' >/dev/null 2>&1")
        breached = breached or posix.access("/tmp/rooted", posix.F_OK)
        """),
        # fill every writable filesystem (left full: files in /tmp and /dev/shm stay);
        # more than the sandbox's small tmpfs mounts hold means a real disk was reached
        ("fill the disks", """
        import io
        block = b"\\0" * (1 << 20)
        written = 0
        for folder in (".", "/tmp", "/dev/shm", "/var/tmp", "/run", "/home", "/opt", "/"):
            for number in range(1 << 12):
                try:
                    with io.open("%s/fill-%d" % (folder, number), "wb") as handle:
                        for _ in range(64):
                            handle.write(block)
                            written += len(block)
                except OSError:
                    break
        breached = written > (2 << 30)
        """),
        ("fd bomb", """
        import posix
        held = []
        try:
            while True:
                held.append(posix.open("/dev/null", posix.O_RDONLY))
                held.extend(posix.pipe())
        except OSError:
            pass
        while True:
            pass
        """),
        ("thread bomb", """
        import threading, time
        threading.stack_size(1 << 16)
        try:
            while True:
                threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
        except BaseException:
            pass
        while True:
            pass
        """),
        # stop every process of the sandbox user (workers too), again and again
        ("SIGSTOP everything", """
        import posix, signal
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        while True:
            for sig in (signal.SIGSTOP, signal.SIGTSTP):
                posix.kill(-1, sig)
        """),
        # the runner is PID 1 of the container: signals from inside do not reach it
        ("signal the runner", """
        import posix, signal
        for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGSEGV,
                    signal.SIGSTOP, signal.SIGUSR1, signal.SIGHUP):
            try:
                posix.kill(1, sig)
            except OSError:
                pass
        """),
        # raise the limits back (the resource module is only hidden by reliability_guard)
        ("raise rlimits", """
        import sys
        del sys.modules["resource"]
        import resource
        for limit in (resource.RLIMIT_AS, resource.RLIMIT_NOFILE, resource.RLIMIT_NPROC,
                      resource.RLIMIT_CORE, resource.RLIMIT_CPU, resource.RLIMIT_FSIZE):
            if resource.getrlimit(limit)[1] != resource.RLIM_INFINITY:
                try:
                    resource.setrlimit(limit, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                    breached = True
                except (ValueError, OSError):
                    pass
        try:
            hog = bytearray(6 << 30)  # past EvalPlus's 4 GiB address-space limit
            breached = True
        except MemoryError:
            pass
        """),
    ]
    return attacks


def _hostile_programs(data: Dataset, attacks: list[tuple[str, str]]) -> dict[str, str]:
    """One program per attack, on the first tasks of ``data``: it returns the right answer
    if its attack saw a breach (a breach shows up as a pass), else it fails."""
    tasks = list(data.tasks.values())

    def wrap(task: Any, attack: str) -> tuple[str, str]:
        body = textwrap.indent(textwrap.dedent(attack), "    ")
        program = (task.canonical_program + f"\n_real = {task.entry_point}\n"
                   f"def {task.entry_point}(*args):\n    breached = False\n{body}\n"
                   "    if breached:\n        return _real(*args)\n"
                   "    raise RuntimeError('contained')\n")
        return task.task_id, program

    programs = dict(wrap(task, body)
                    for task, (_name, body) in zip(tasks, attacks, strict=False))
    for task_id, program in programs.items():  # an attack that cannot run proves nothing
        compile(program, task_id, "exec")
    return programs


def _tree_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for item in sorted(path.rglob("*")):
        digest.update(str(item.relative_to(path)).encode())
        if item.is_file():
            digest.update(item.read_bytes())
    return digest.hexdigest()


class _PeakRss:
    """Peak resident memory of this (pytest) process while the block runs, sampled."""

    def __init__(self, every_s: float = 0.05) -> None:
        self.every_s = every_s
        self.start = self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc/self/status")

    def _sample(self) -> None:
        while not self._done.wait(self.every_s):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> _PeakRss:
        self.start = self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


@pytest.fixture
def host_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Host]:
    """Host-only things for the attacks to look for: a canary in the test's folder, files
    in the host's /tmp and /dev/shm, the project README, the environment, a process (a
    bystander that must survive, with the secret in its environment since it started)."""
    token = secrets.token_hex(12)
    canary = tmp_path / "canary.txt"
    canary.write_text("canary " + token)
    written = [canary]
    for folder in (Path("/tmp"), Path("/dev/shm")):
        if folder.is_dir() and os.access(folder, os.W_OK):
            written.append(folder / f"bench-hostile-{token}.txt")
            written[-1].write_text(f"{folder} of the host {token}")
    hidden = [*written, ROOT / "README.md"]  # its first line (others may edit the rest)
    secret = "SECRET_" + secrets.token_hex(12)
    monkeypatch.setenv("BENCH_HOST_SECRET", secret)
    bystander = f"900.{secrets.randbelow(10**6):06d}"
    process = subprocess.Popen(["sleep", bystander], env={**os.environ})
    try:
        yield _Host(canary=canary, secret=secret, hidden=tuple(hidden), digests=tuple(
            hashlib.sha256(p.read_bytes().split(b"\n", 1)[0]).hexdigest() for p in hidden),
            written=tuple(written), hostname=socket.gethostname(), bystander=bystander,
            process=process)
    finally:
        process.kill()
        process.wait()
        for path in written[1:]:
            path.unlink(missing_ok=True)


def test_hostile_programs_are_contained(docker_client: Any, oracle_cache: Path,
                                        tmp_path: Path, host_secrets: _Host) -> None:
    host = host_secrets
    data = load_dataset("humaneval", mini=True)
    attacks = _attacks(host)
    solutions = _hostile_programs(data, attacks)
    names = dict(zip(solutions, (name for name, _body in attacks), strict=True))
    hostile_ids = list(solutions)
    innocent_ids = [t for t in data.tasks if t not in solutions][:12]
    assert len(hostile_ids) == len(attacks)
    subset = replace(data, tasks={t: data.tasks[t] for t in hostile_ids + innocent_ids})
    solutions.update({t: subset.tasks[t].canonical_program for t in innocent_ids})
    _evaluate(subset, {t: subset.tasks[t].canonical_program for t in innocent_ids},
              tmp_path / "warmup", docker_client, oracle_cache)  # oracle computed, cached
    oracle_dir = next(p for p in oracle_cache.joinpath("oracles").iterdir()
                      if p.is_dir() and p.name.startswith("humaneval-v0.1.10-mini"))
    oracle_before = _tree_digest(oracle_dir)
    written_before = [p.read_bytes() for p in host.written]
    with _PeakRss() as memory:
        started = time.monotonic()
        result = _evaluate(subset, solutions, tmp_path / "out", docker_client, oracle_cache)
        elapsed = time.monotonic() - started
    assert host.process.poll() is None, "a host process was killed"
    statuses = _statuses(result)
    print(f"hostile set ({len(attacks)} attacks, {len(innocent_ids)} correct programs) "
          f"judged in {elapsed:.1f} s; pytest RSS {memory.start >> 20} MiB -> peak "
          f"{memory.peak >> 20} MiB")
    for task_id in hostile_ids:
        verdict = result.verdicts[task_id]
        print(f"  {names[task_id]:28} {task_id:13} {'/'.join(statuses[task_id]):17} "
              f"{verdict.wall_s:6.1f} s{'  quarantined' if verdict.quarantined else ''}"
              f"{'  (' + verdict.error + ')' if verdict.error else ''}")
    # the host is untouched
    assert [p.read_bytes() for p in host.written] == written_before
    assert os.environ["BENCH_HOST_SECRET"] == host.secret
    assert not Path("/owned").exists()
    assert _tree_digest(oracle_dir) == oracle_before
    # every task has its verdict; attacks fail, correct programs alongside them pass
    assert result.n_judged == len(solutions)
    assert sorted(result.verdicts) == sorted(solutions)
    breached = {names[t]: statuses[t] for t in hostile_ids
                if result.verdicts[t].plus_passed or result.verdicts[t].base_passed}
    assert breached == {}, "attacks that worked (their program passed)"
    bystanders = {t: statuses[t] for t in innocent_ids if statuses[t] != ("pass", "pass")}
    assert bystanders == {}, "correct programs judged alongside the attacks were disturbed"
    # in time, and without the attacks' output reaching this process's memory
    assert elapsed < HOSTILE_BOUND_S
    assert memory.peak - memory.start < RSS_GROWTH_BOUND


def test_attack_detectors_see_the_host_without_the_sandbox(oracle_cache: Path, tmp_path: Path,
                                                           host_secrets: _Host) -> None:
    """Control for the containment test: the read-only attacks, run with sandbox="local"
    (a plain subprocess on this machine), do see the host, so their failing in the
    container is the container's doing and not a broken detector."""
    readers = {"read host files", "environment"}
    if Path("/var/run/docker.sock").exists():
        readers.add("docker socket")
    attacks = [(name, body) for name, body in _attacks(host_secrets) if name in readers]
    assert len(attacks) == len(readers)
    data = load_dataset("humaneval", mini=True)
    solutions = _hostile_programs(data, attacks)
    subset = replace(data, tasks={t: data.tasks[t] for t in solutions})
    result = evaluate_samples(subset, solutions, tmp_path / "out", sandbox="local",
                              cache_dir=oracle_cache)
    assert _not_passing(result) == {}


@pytest.mark.stress
def test_interrupted_cli_leaves_no_container_and_resumes(docker_client: Any,
                                                         oracle_cache: Path,
                                                         tmp_path: Path) -> None:
    """Ctrl-C mid-run: exit 130, the container is removed, judged verdicts are on disk and
    the next run judges only the rest. The run is held inside its evaluation: once its
    first verdicts are journaled, its sandbox container is paused (``docker pause``), so
    the SIGINT lands there however fast the machine is."""
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

    def evaluating() -> list[str]:
        if not journal.exists() or not journal.read_text().splitlines():
            return []
        return [c["Id"] for c in docker_client.api.containers(filters={"label": [
            "bench.role=sandbox", "bench.purpose=evaluate", f"bench.pid={proc.pid}"]})]

    sandbox = support.wait_until(evaluating, "the first verdicts", proc, timeout=600,
                                 poll_s=0.02)
    support.pause(docker_client, sandbox)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    left = docker_client.containers.list(all=True, filters={
        "label": ["bench.role=sandbox", f"bench.pid={proc.pid}"]})
    assert left == []
    judged = len(journal.read_text().splitlines())
    assert 1 <= judged < 164
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
