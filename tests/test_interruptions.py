"""Interruptions of a real benchmark at each phase, and the reaper after a hard kill.

The matrix {SIGINT, SIGTERM, pytest-timeout (``signal`` method)} x {startup, generation,
evaluation}: each case runs the real ``bench_tests/test_humaneval_plus.py`` (a real
llama-server with the smoke model, the real sandbox) as a ``pytest`` subprocess of a tiny
project, interrupts it inside the phase (SIGINT and SIGTERM go to pytest's process group,
as a terminal or a CI runner sends them), then checks:

* no container of the run is left when pytest has exited (servers: label
  ``bench.run_id``; sandboxes: ``bench.owner_pid`` of the pytest process): the process
  removed them itself, before it ended;
* every result file present is whole: each ``.json`` parses, each ``.jsonl`` line parses
  (only the two journals, completions.jsonl and verdicts.jsonl, may end in one line cut
  short, which their readers skip and redo; such lines are counted), junit.xml parses,
  report.html is complete, history.sqlite passes its integrity check, no ``*.tmp`` file
  is left;
* the next run resumes: it sends only the requests whose answers were not stored yet
  (summary.json ``requests_sent``), and judges only the tasks without a verdict
  (verdicts.jsonl grows by exactly those).

How each phase is held open, and how it is seen from outside. Every hold lasts until the
test has delivered its interruption (the product's own patience, a 600 s health timeout
and a 300 s hang watchdog, is far longer): no case relies on the machine being slow.

* startup: the model file is a named pipe, so llama-server stays in its model load until
  the pipe is removed. The harness hashes the model file before it starts the server; its
  model-hash cache gets an entry for the pipe, so that hash does not block. Seen: the
  run's container running and ``/health`` answering 503. For the next run the pipe is
  replaced by the smoke model (same profile, same container name: a leftover would
  clash); it sends every request, as nothing was stored.
* generation: seen when the first answer is in completions.jsonl. The server's container
  is then paused (``docker pause``, a hung server): the requests in flight wait, no
  further answer comes. The run has 60 tasks at up to 128 tokens, one slot: the pause
  lands in a few tens of milliseconds (a freeze that runc gives up on under load is
  tried again, ``support.pause``), the remaining 59 answers take seconds.
* evaluation: every task but the last already has its stored answer (the first
  evaluation case stores them with a plain run), so the run starts the server, asks for
  the last answer and evaluates. The stored answers are programs that sleep
  ``JUDGE_SLEEP_S`` as they load, so judging them lasts seconds on any machine. Seen: the
  run's sandbox container and its first verdicts in verdicts.jsonl. The sandbox is then
  paused: no further verdict comes.

SIGINT and SIGTERM are sent while the phase is held; pytest-timeout gets a ``--timeout``
longer than the time the phase takes to be reached (asserted: the phase was seen before
the timer could fire), and the hold keeps the run inside the phase until the timer fires.
Every case then checks where the interruption landed (what was stored, what was judged:
``check_phase_was_hit``).

Then the reaper (plugin.containers.watchdog), for endings no ``finally`` sees: pytest-timeout's
``thread`` method (``os._exit``) and SIGKILL. No new session runs; the containers must be
gone within ``REAPER_BOUND_S`` of the owner's death.

Every case prints one ``FIGURES`` line (run with ``-s`` to see them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import support
from docker.client import DockerClient
from docker.errors import NotFound

from plugin import atomic
from plugin.cache import cache_root
from plugin.containers.client import docker_client, engine_url
from plugin.containers.labels import LABEL_OWNER_HOST, LABEL_OWNER_PID, LABEL_RUN_ID, harness_labels
from plugin.containers.watchdog import EXIT_NO_ENGINE, SECOND_SWEEP_AFTER_S, watch
from plugin.datasets import load_dataset

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("LLAMA_IMAGE", "local/llama.cpp:server")
PROFILE = "bench-int"
MODEL = "model.gguf"
RESULTS = Path("reports") / PROFILE / "humaneval"
JOURNALS = ("completions.jsonl", "verdicts.jsonl")
JUDGE_SLEEP_S = 0.5  # each stored answer's program sleeps this long as it is loaded
# A hang guard, not a speed target: removal takes 0.2-0.5 s idle (the FIGURES lines); the
# reaper runs at nice 10, so under a CPU hog it gets a small share of a core.
REAPER_BOUND_S = 60.0


@dataclass(frozen=True)
class Phase:
    name: str
    tasks: int  # --bench-limit
    max_tokens: int
    #: pytest-timeout's --timeout: longer than reaching the phase takes on a loaded
    #: machine (a few seconds idle); the phase is held open until it fires.
    timeout_s: float


PHASES = {
    "startup": Phase("startup", tasks=3, max_tokens=16, timeout_s=20.0),
    "generation": Phase("generation", tasks=60, max_tokens=128, timeout_s=20.0),
    "evaluation": Phase("evaluation", tasks=40, max_tokens=16, timeout_s=30.0),
}
SIGNALS = ("SIGINT", "SIGTERM", "timeout")
EXIT_CODES = {"SIGINT": 2, "SIGTERM": -signal.SIGTERM, "timeout": 1}
FAST = ("-p", "no:hypothesispytest")  # a dev plugin the benchmark does not need (2 s)


# --------------------------------------------------------------------------- the project


@pytest.fixture(scope="module")
def client() -> Iterator[DockerClient]:
    client = docker_client()
    yield client
    client.close()


@pytest.fixture(scope="module")
def stored_answers() -> dict[str, str]:
    """completions.jsonl of the evaluation cases (all tasks but the last), made once."""
    return {}


@dataclass
class Bench:
    """The tiny project of one case: its models folder, phase and run id."""

    project: Any  # tests/conftest.py BenchProject
    models: Path
    phase: Phase
    run_id: str

    @property
    def results(self) -> Path:
        return self.project.path / RESULTS

    def start(self, *args: str, tasks: int | None = None) -> subprocess.Popen[str]:
        return self.project.start(
            "--bench-limit", str(tasks or self.phase.tasks), "-rA", *FAST, *args,
            run_id=self.run_id, BENCH_CACHE_DIR=str(cache_root()))

    def run(self, tasks: int | None = None) -> tuple[int, str, int]:
        proc = self.start(tasks=tasks)
        output = finish(proc, 300)
        return proc.returncode, output, proc.pid

    def summary(self) -> dict[str, Any]:
        return dict(json.loads((self.results / "summary.json").read_text()))

    def valid(self, name: str) -> int:
        """Lines of a journal that parse (what its reader will reuse)."""
        path = self.results / ("eval" if name == "verdicts.jsonl" else "") / name
        if not path.exists():
            return 0
        return sum(1 for line in path.read_text().splitlines() if parses(line))


def make_bench(bench_project: Any, smoke_models: Path, tmp_path: Path, phase: Phase) -> Bench:
    models = tmp_path / "models"
    models.mkdir()
    models.chmod(0o755)
    if phase.name == "startup":
        os.mkfifo(models / MODEL)
        seed_model_hash(models / MODEL)
    else:  # copy2 keeps the mtime: the cases of a phase share their fingerprint
        shutil.copy2(smoke_models / "smoke-tiny.gguf", models / MODEL)
    project = bench_project(bench_project.profile(
        PROFILE, MODEL, MODELS_DIR=str(models), CTX_SIZE="2048",
        MAX_TOKENS=str(phase.max_tokens)))
    (project.path / "bench_tests" / "test_life.py").unlink()
    shutil.copy(ROOT / "bench_tests" / "test_humaneval_plus.py", project.path / "bench_tests")
    return Bench(project, models, phase, f"int-{uuid.uuid4().hex[:12]}")


def seed_model_hash(model: Path) -> None:
    """An entry of the harness's model-hash cache (model_identity: keyed by path, size and
    mtime) for the named pipe, so the harness does not block reading it."""
    cache = cache_root() / "model-hashes.json"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    stat = model.stat()
    known[f"{model.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"] = "0" * 64
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(cache, json.dumps(known, indent=1, sort_keys=True))


def store_answers(bench: Bench, cache: dict[str, str]) -> None:
    """Answers to every task but the last in completions.jsonl (a plain run, once), each
    rewritten into a program that sleeps ``JUDGE_SLEEP_S`` when the sandbox loads it: the
    evaluation then lasts at least (tasks - 1) x that / workers of wall time however fast
    the machine, and the sandbox is paused long before it could end."""
    if "completions" not in cache:
        code, output, _pid = bench.run(tasks=bench.phase.tasks - 1)
        assert code == 0, output
        entry_points = {t: task.entry_point for t, task in load_dataset("humaneval").tasks.items()}
        records = []
        for line in (bench.results / "completions.jsonl").read_text().splitlines():
            record = json.loads(line)
            record["content"] = (
                f"```python\ndef {entry_points[record['task_id']]}(*args, "
                f"_hold=__import__('time').sleep({JUDGE_SLEEP_S})):\n    return None\n```\n")
            records.append(json.dumps(record) + "\n")
        cache["completions"] = "".join(records)
        shutil.rmtree(bench.project.path / "reports")
    bench.results.mkdir(parents=True)
    (bench.results / "completions.jsonl").write_text(cache["completions"])
    assert bench.valid("completions.jsonl") == bench.phase.tasks - 1


# --------------------------------------------------------------------------- observing


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> str:
    return support.finish(proc, timeout)


def wait_until(condition: Callable[[], Any], what: str, proc: subprocess.Popen[str],
               timeout: float = 120) -> Any:
    return support.wait_until(condition, what, proc, timeout, poll_s=0.02)


def parses(line: str) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def containers_of(client: DockerClient, run_id: str, pid: int) -> list[str]:
    """Names of the run's containers (servers) and of those the process created."""
    found: dict[str, str] = {}
    for labels in ([f"{LABEL_RUN_ID}={run_id}"],
                   [f"{LABEL_OWNER_PID}={pid}",
                    f"{LABEL_OWNER_HOST}={socket.gethostname()}"]):
        for entry in client.api.containers(all=True, filters={"label": labels}):
            found[entry["Id"]] = entry["Names"][0].lstrip("/")
    return sorted(found.values())


def sandbox_of(client: DockerClient, pid: int) -> list[str]:
    """Ids of the evaluation sandboxes the process runs."""
    return [entry["Id"] for entry in client.api.containers(filters={"label": [
        "bench.role=sandbox", "bench.purpose=evaluate", f"{LABEL_OWNER_PID}={pid}"]})]


def check_results_whole(reports: Path) -> int:
    """Fail on any result file that is not whole; the number of journal lines cut short
    (tolerated as the last line of a journal only)."""
    problems: list[str] = []
    cut = 0
    for path in sorted(p for p in reports.rglob("*") if p.is_file()):
        name = str(path.relative_to(reports))
        if path.name.endswith(".tmp"):
            problems.append(f"{name}: temp file left behind")
        elif path.suffix == ".json":
            if not parses(path.read_text()):
                problems.append(f"{name}: not whole JSON")
        elif path.suffix == ".jsonl":
            text = path.read_text()
            lines = text.splitlines()
            if path.name in JOURNALS and lines and not text.endswith("\n") \
                    and not parses(lines[-1]):
                lines, cut = lines[:-1], cut + 1
            problems += [f"{name}:{i}: not JSON" for i, line in enumerate(lines, 1)
                         if not parses(line)]
        elif path.suffix == ".xml":
            try:
                ET.parse(path)
            except ET.ParseError as exc:
                problems.append(f"{name}: {exc}")
        elif path.suffix == ".html" and not path.read_text().rstrip().endswith("</html>"):
            problems.append(f"{name}: cut short")
        elif path.suffix == ".sqlite":
            conn = sqlite3.connect(path)
            try:
                verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
            finally:
                conn.close()
            if verdict != "ok":
                problems.append(f"{name}: {verdict}")
    assert not problems, "\n".join(problems)
    return cut


def seconds_until_clean(client: DockerClient, run_id: str, pid: int, bound: float) -> float:
    """Seconds until no container of the run or process is left; fails after ``bound``."""
    started = time.monotonic()
    while left := containers_of(client, run_id, pid):
        if time.monotonic() - started > bound:
            raise AssertionError(f"containers left after {bound:g} s: {left}")
        time.sleep(0.01)
    return time.monotonic() - started


def figures(**values: Any) -> None:
    print("FIGURES " + json.dumps(values))


# --------------------------------------------------------------------------- the matrix


def hold_phase(bench: Bench, client: DockerClient, proc: subprocess.Popen[str],
               started: float) -> float:
    """Return once the run is seen inside its phase and held there (the startup's pipe
    holds itself; generation and evaluation have their container paused); the seconds
    from the start of ``proc`` until the phase was seen."""
    phase = bench.phase
    if phase.name == "startup":
        wait_until(lambda: support.server_loading(client, bench.run_id), "the server loading",
                   proc)
    elif phase.name == "generation":
        wait_until(lambda: bench.valid("completions.jsonl") >= 1, "the first answer", proc)
        support.pause(client, [entry["Id"] for entry in client.api.containers(
            filters={"label": f"bench.run_id={bench.run_id}"})])
    else:
        sandbox = wait_until(lambda: bench.valid("verdicts.jsonl") >= 1
                             and sandbox_of(client, proc.pid), "the first verdicts", proc)
        support.pause(client, sandbox)
    return time.monotonic() - started


def check_reached_before_the_timer(phase: Phase, in_phase: float) -> None:
    """The timer (armed after pytest's start) cannot have fired before the phase was seen."""
    assert in_phase < phase.timeout_s, (
        f"the {phase.name} phase was reached only after {in_phase:.1f} s, past "
        f"pytest-timeout's {phase.timeout_s:g} s: raise Phase.timeout_s")


def check_phase_was_hit(bench: Bench, output: str) -> None:
    """What was stored and judged when the interruption came shows where it landed."""
    answers, verdicts = bench.valid("completions.jsonl"), bench.valid("verdicts.jsonl")
    tasks = bench.phase.tasks
    if bench.phase.name == "startup":
        assert (answers, verdicts) == (0, 0), output
    elif bench.phase.name == "generation":
        assert 1 <= answers < tasks, output
        assert verdicts == 0, output
    else:
        assert answers == tasks, output
        assert 1 <= verdicts < tasks, output


def check_resumed(bench: Bench, before: dict[str, int], output: str) -> dict[str, Any]:
    summary = bench.summary()
    tasks = bench.phase.tasks
    assert summary["n_tasks"] == tasks
    assert summary["unjudged"] == [], output
    assert summary["requests_sent"] == tasks - before["answers"], output
    if before["answers"]:
        assert summary["requests_sent"] < tasks
    judged = bench.valid("verdicts.jsonl") - before["verdicts"]
    assert judged == tasks - before["verdicts"], "verdicts already judged were judged again"
    return {"requests_sent": summary["requests_sent"], "judged": judged}


# The cases whose timer must fire inside a held phase are the timing-sensitive ones
# (`make test-stress`); the signal cases are delivered while the phase is held.
MATRIX = [pytest.param(how, phase, id=f"{how}-{phase}",
                       marks=[pytest.mark.stress] if how == "timeout" and phase != "startup"
                       else [])
          for how in SIGNALS for phase in PHASES]


@pytest.mark.parametrize(("how", "phase"), MATRIX)
def test_interruption_leaves_no_container_no_torn_file_and_the_next_run_resumes(
        how: str, phase: str, client: DockerClient, bench_project: Any, smoke_models: Path,
        tmp_path: Path, stored_answers: dict[str, str]) -> None:
    case_started = time.monotonic()
    bench = make_bench(bench_project, smoke_models, tmp_path, PHASES[phase])
    if phase == "evaluation":
        store_answers(bench, stored_answers)
    args = ("--timeout", str(bench.phase.timeout_s)) if how == "timeout" else ()
    started = time.monotonic()
    proc = bench.start(*args)
    in_phase = hold_phase(bench, client, proc, started)
    if how == "timeout":  # fires while the phase is held
        check_reached_before_the_timer(bench.phase, in_phase)
    else:  # delivered while the phase is held
        os.killpg(proc.pid, getattr(signal, how))
    sent = time.monotonic()
    output = finish(proc)
    exited = time.monotonic()
    assert proc.returncode == EXIT_CODES[how], support.last_lines(output)
    if how == "timeout":
        assert f"Timeout (>{bench.phase.timeout_s}s) from pytest-timeout" in output
    assert containers_of(client, bench.run_id, proc.pid) == [], \
        "the interrupted run did not remove its containers before it ended"
    assert "could not remove container" not in output
    check_phase_was_hit(bench, output)
    cut = check_results_whole(bench.project.path / "reports")
    before = {"answers": bench.valid("completions.jsonl"),
              "verdicts": bench.valid("verdicts.jsonl")}

    if phase == "startup":  # the model loads now (same path, same profile)
        shutil.copy2(smoke_models / "smoke-tiny.gguf", bench.models / "loadable.gguf")
        os.replace(bench.models / "loadable.gguf", bench.models / MODEL)
    resume_started = time.monotonic()
    code, again, pid = bench.run()
    resume_s = time.monotonic() - resume_started
    assert code == 0, again
    resumed = check_resumed(bench, before, again)
    cut += check_results_whole(bench.project.path / "reports")
    assert containers_of(client, bench.run_id, pid) == []
    figures(case=f"{how}/{phase}", seen_in_phase_after_s=round(in_phase, 2),
            exit_after_signal_s=round(exited - sent, 2) if how != "timeout" else None,
            interrupted_run_s=round(exited - started, 1), exit_code=proc.returncode,
            answers_stored=before["answers"], verdicts_stored=before["verdicts"],
            cut_lines=cut, resume_run_s=round(resume_s, 1),
            case_s=round(time.monotonic() - case_started, 1), **resumed)


# --------------------------------------------------------------------------- the reaper


def reaper_of(pid: int, engine: str | None = None) -> list[int]:
    """Pids of the reaper processes watching ``pid`` (on ``engine``, if given)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode().split("\0")
        except (OSError, ValueError):
            continue
        if "plugin.containers.watchdog" not in argv or "--pid" not in argv \
                or argv[argv.index("--pid") + 1] != str(pid):
            continue
        if engine is None or engine in argv:
            found.append(int(entry.name))
    return found


@pytest.mark.parametrize(("how", "phase"), [
    pytest.param("thread-timeout", "generation", marks=pytest.mark.stress),
    ("SIGKILL", "generation"),
    ("SIGKILL", "evaluation")])
def test_reaper_removes_the_containers_of_a_killed_run(
        how: str, phase: str, client: DockerClient, bench_project: Any, smoke_models: Path,
        tmp_path: Path, stored_answers: dict[str, str]) -> None:
    """No ``finally`` runs after ``os._exit`` (pytest-timeout's ``thread`` method) or
    SIGKILL; the reaper the run started with its first container removes them all."""
    bench = make_bench(bench_project, smoke_models, tmp_path, PHASES[phase])
    if phase == "evaluation":
        store_answers(bench, stored_answers)
    args = ("--timeout", str(bench.phase.timeout_s), "-o", "timeout_method=thread") \
        if how == "thread-timeout" else ()
    started = time.monotonic()
    proc = bench.start(*args)
    in_phase = hold_phase(bench, client, proc, started)
    if how == "thread-timeout":
        check_reached_before_the_timer(bench.phase, in_phase)
    watchers = reaper_of(proc.pid)
    assert len(watchers) == 1, f"expected one reaper for pytest {proc.pid}: {watchers}"
    if phase == "evaluation":
        assert sandbox_of(client, proc.pid)
    if how == "SIGKILL":  # the reaper removes the paused containers
        os.killpg(proc.pid, signal.SIGKILL)
    output = finish(proc)
    died = time.monotonic()
    if how == "SIGKILL":
        assert proc.returncode == -signal.SIGKILL, output
    else:
        assert proc.returncode == 1, output
        assert "Timeout" in output
        check_phase_was_hit(bench, output)
    removed_after = seconds_until_clean(client, bench.run_id, proc.pid, REAPER_BOUND_S)
    deadline = time.monotonic() + 10 + SECOND_SWEEP_AFTER_S
    while reaper_of(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert reaper_of(proc.pid) == [], "the reaper did not exit after its sweeps"
    figures(case=f"reaper/{how}/{phase}", removed_after_death_s=round(removed_after, 3),
            reaper_exited_after_s=round(time.monotonic() - died, 1))


def sleeper(client: DockerClient, owner: int, run_id: str) -> Any:
    labels = {**harness_labels(run_id=run_id, role="reaper-test"),
              LABEL_OWNER_PID: str(owner)}
    return client.containers.run(IMAGE, ["300"], entrypoint=["sleep"], detach=True,
                                 labels=labels)


@pytest.mark.stress
def test_reaper_spares_containers_of_live_processes(client: DockerClient) -> None:
    """Started by hand for a process that is not its parent: it waits while the owner
    lives, then removes the owner's container and only that one."""
    run_id = f"reap-{uuid.uuid4().hex[:12]}"
    owner = subprocess.Popen(["sleep", "300"])
    bystander = subprocess.Popen(["sleep", "300"])
    mine, theirs = sleeper(client, owner.pid, run_id), sleeper(client, bystander.pid, run_id)
    try:
        watcher = subprocess.Popen([sys.executable, "-m", "plugin.containers.watchdog", "--pid",
                                    str(owner.pid)], cwd=ROOT)
        time.sleep(2.0)
        assert watcher.poll() is None, "the reaper must wait while its owner lives"
        assert {c.id for c in client.containers.list(
            filters={"label": f"bench.run_id={run_id}"})} == {mine.id, theirs.id}
        owner.kill()
        owner.wait()
        removed_after = seconds_until_clean(client, "-", owner.pid, REAPER_BOUND_S)
        assert watcher.wait(timeout=30) == 0
        assert client.containers.get(theirs.id).status == "running"
        figures(case="reaper/by-hand", removed_after_death_s=round(removed_after, 3))
    finally:
        for proc in (owner, bystander):
            proc.kill()
            proc.wait()
        for container in (mine, theirs):
            with contextlib.suppress(NotFound):
                container.remove(force=True)


def test_reaper_exits_at_once_when_the_engine_does_not_answer() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "plugin.containers.watchdog", "--pid",
                           str(os.getpid()),
                           "--docker-host", "unix:///nonexistent/docker.sock"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == EXIT_NO_ENGINE, done.stderr
    assert time.monotonic() - started < 60  # the reaper runs at nice 10: a hang guard


def test_one_detached_reaper_per_process_and_engine(client: DockerClient) -> None:
    """Started once, in a session of its own, holding nothing of ours open but /dev/null."""
    engine = engine_url(client)
    for _ in range(3):
        watch(client)
    watch(object())  # not a Docker client: ignored
    deadline = time.monotonic() + 5  # its /proc entry shows the command once exec is done
    while not (watchers := reaper_of(os.getpid(), engine)) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    watchers = reaper_of(os.getpid(), engine)
    assert len(watchers) == 1, watchers
    pid = watchers[0]
    assert os.getsid(pid) == pid != os.getsid(0)
    assert {os.readlink(f"/proc/{pid}/fd/{n}") for n in (0, 1, 2)} == {"/dev/null"}
    ours = {target for target in open_files(os.getpid())
            if target.startswith(("pipe:", "/")) and target != "/dev/null"}
    assert not ours & open_files(pid), "the reaper holds files or pipes of its owner"
    assert os.readlink(f"/proc/{pid}/cwd") == "/"


def open_files(pid: int) -> set[str]:
    targets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            targets.add(os.readlink(fd))
    return targets


def test_engine_url_names_the_engine_the_client_talks_to() -> None:
    unix = DockerClient(base_url="unix:///var/run/docker.sock", version="1.41")
    tcp = DockerClient(base_url="tcp://10.1.2.3:2375", version="1.41")
    assert engine_url(unix) == "unix:///var/run/docker.sock"
    assert engine_url(tcp) == "tcp://10.1.2.3:2375"
