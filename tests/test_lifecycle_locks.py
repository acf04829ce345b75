"""Per-GPU locks: two servers that share a GPU never run at the same time.

There is no GPU here, so these tests drive :class:`~plugin.server.lazy.LazyServer` with
the real lock code (real ``filelock`` files in a temporary lock dir) but with the
container start replaced by recording when the "server" was up (``RecordingServer``
overrides ``_start``). Everything between ``get()`` and ``close()`` is what a real run
does with the GPU; the recorded intervals show what ran together.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from filelock import FileLock, Timeout

from plugin.config.models_conf import load_models_conf
from plugin.config.profile import Defaults, Profile
from plugin.errors import ServerStartError
from plugin.server.lazy import ALL_GPUS_LOCK, LazyServer, engine_key, gpu_locks

ROOT = Path(__file__).resolve().parent.parent
HOLD_S = 0.4


@pytest.fixture(scope="module")
def smoke() -> Profile:
    return load_models_conf(ROOT / "models.conf", Defaults()).profiles["bench-smoke"]


@pytest.fixture(autouse=True)
def _local_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)


class RecordingServer(LazyServer):
    """LazyServer whose container start only records the interval the server was up."""

    lock_poll_s = 0.05

    def __init__(self, profile: Profile, lock_dir: Path, record: list[tuple[str, float, float]],
                 *, fail: bool = False) -> None:
        super().__init__(profile, log_path=lock_dir / f"{profile.name}.log", run_id="test",
                         lock_dir=lock_dir)
        self.record = record
        self.fail = fail

    @contextlib.contextmanager
    def _start(self) -> Iterator[Any]:
        if self.fail:
            raise ServerStartError("llama-server exited with code 1 (simulated)")
        started = time.monotonic()
        try:
            yield SimpleNamespace(base_url="http://fake")
        finally:
            self.record.append((self.profile.name, started, time.monotonic()))


def profile_on(smoke: Profile, name: str, gpus: tuple[str, ...],
               docker_host: str | None = None) -> Profile:
    return replace(smoke, name=name, gpus=gpus, docker_host=docker_host)


def run_together(servers: list[LazyServer], hold_s: float = HOLD_S) -> None:
    """Each server in its own thread (like xdist workers): get(), use, close()."""
    errors: list[BaseException] = []

    def use(server: LazyServer) -> None:
        try:
            server.get()
            time.sleep(hold_s)
        except BaseException as exc:
            errors.append(exc)
        finally:
            server.close()

    threads = [threading.Thread(target=use, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
        time.sleep(0.05)  # start order = list order
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors


def overlap(record: list[tuple[str, float, float]], a: str, b: str) -> bool:
    (_, a0, a1), = [r for r in record if r[0] == a]
    (_, b0, b1), = [r for r in record if r[0] == b]
    return a0 < b1 and b0 < a1


# --------------------------------------------------------------------------- serialization


@pytest.mark.parametrize(("gpus_a", "gpus_b"), [
    (("0",), ("0",)),
    (("all",), ("0",)),
    (("0",), ("all",)),
    (("0", "1"), ("1", "2")),
    (("all",), ("all",)),
])
def test_profiles_sharing_a_gpu_run_one_after_the_other(
        smoke: Profile, tmp_path: Path, gpus_a: tuple[str, ...],
        gpus_b: tuple[str, ...]) -> None:
    record: list[tuple[str, float, float]] = []
    run_together([RecordingServer(profile_on(smoke, "a", gpus_a), tmp_path, record),
                  RecordingServer(profile_on(smoke, "b", gpus_b), tmp_path, record)])
    assert not overlap(record, "a", "b"), record


@pytest.mark.parametrize(("gpus_a", "gpus_b"), [
    (("0",), ("1",)),
    (("0", "1"), ("2",)),
    ((), ()),  # CPU profiles take no lock at all
])
def test_profiles_on_different_gpus_run_together(
        smoke: Profile, tmp_path: Path, gpus_a: tuple[str, ...],
        gpus_b: tuple[str, ...]) -> None:
    record: list[tuple[str, float, float]] = []
    run_together([RecordingServer(profile_on(smoke, "a", gpus_a), tmp_path, record),
                  RecordingServer(profile_on(smoke, "b", gpus_b), tmp_path, record)])
    assert overlap(record, "a", "b"), record


def test_the_same_gpu_on_another_docker_host_runs_together(
        smoke: Profile, tmp_path: Path) -> None:
    record: list[tuple[str, float, float]] = []
    run_together([
        RecordingServer(profile_on(smoke, "a", ("0",), "tcp://gpu-box-1:2375"), tmp_path, record),
        RecordingServer(profile_on(smoke, "b", ("0",), "tcp://gpu-box-2:2375"), tmp_path, record),
    ])
    assert overlap(record, "a", "b"), record
    assert {p.name for p in tmp_path.iterdir() if p.is_dir()} == {
        "host-tcp_gpu-box-1_2375", "host-tcp_gpu-box-2_2375"}


def test_all_waits_for_running_ids_and_holds_back_new_ones(
        smoke: Profile, tmp_path: Path) -> None:
    """0 runs; 'all' arrives and waits; 1 arrives later and waits for 'all' (no starving)."""
    record: list[tuple[str, float, float]] = []
    run_together([RecordingServer(profile_on(smoke, "zero", ("0",)), tmp_path, record),
                  RecordingServer(profile_on(smoke, "every", ("all",)), tmp_path, record),
                  RecordingServer(profile_on(smoke, "one", ("1",)), tmp_path, record)])
    order = [name for name, _, _ in sorted(record, key=lambda r: r[1])]
    assert order == ["zero", "every", "one"], record
    assert not overlap(record, "zero", "every")
    assert not overlap(record, "every", "one")


def test_two_processes_sharing_gpu_0_serialize(tmp_path: Path) -> None:
    """The xdist case: separate processes, one lock dir."""
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from plugin.server.lazy import gpu_locks
        with gpu_locks(("0",), Path(sys.argv[1])):
            start = time.time()
            time.sleep({HOLD_S})
            print(start, time.time(), flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "locks")],
                              stdout=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    spans = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        spans.append(tuple(map(float, out.split())))
    (_, first_end), (second_start, _) = sorted(spans)
    assert second_start >= first_end, f"processes held GPU 0 together: {spans}"


# --------------------------------------------------------------------------- release


def test_failed_start_releases_its_gpus_at_once(smoke: Profile, tmp_path: Path) -> None:
    record: list[tuple[str, float, float]] = []
    broken = RecordingServer(profile_on(smoke, "broken", ("0",)), tmp_path, record, fail=True)
    with pytest.raises(ServerStartError):
        broken.get()
    with pytest.raises(ServerStartError):
        broken.get()  # not retried: the same error
    started = time.monotonic()
    healthy = RecordingServer(profile_on(smoke, "ok", ("0",)), tmp_path, record)
    healthy.get()  # would wait forever if 'broken' still held GPU 0 (it is never closed)
    healthy.close()
    assert time.monotonic() - started < 2
    assert healthy.lock_wait_s < 1


def test_an_aborted_start_errors_later_gets(smoke: Profile, tmp_path: Path) -> None:
    """A pytest-timeout expiry (``Failed``, a BaseException) in the first start: the
    profile's next test gets a ServerStartError naming it, not a second 'Timeout'."""

    class Aborted(BaseException):
        pass

    class AbortedServer(RecordingServer):
        def _start(self) -> Any:
            raise Aborted("Timeout (>6.0s) from pytest-timeout.")

    server = AbortedServer(profile_on(smoke, "slow", ("0",)), tmp_path, [])
    with pytest.raises(Aborted):
        server.get()
    with pytest.raises(ServerStartError, match=r"start of \[slow\]'s llama-server was "
                       r"aborted in an earlier test \(Aborted: Timeout"):
        server.get()
    interrupted = AbortedServer(profile_on(smoke, "x", ()), tmp_path, [])
    interrupted._error = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C stays Ctrl-C
        interrupted.get()


def test_close_releases_and_the_lock_files_stay(smoke: Profile, tmp_path: Path) -> None:
    server = RecordingServer(profile_on(smoke, "a", ("1", "0")), tmp_path, [])
    server.get()
    folder = tmp_path / "host-local"
    assert sorted(p.name for p in folder.iterdir()) == [
        "gpu-0.lock", "gpu-1.lock", ALL_GPUS_LOCK]
    with pytest.raises(Timeout):
        FileLock(str(folder / "gpu-0.lock")).acquire(timeout=0.1)
    server.close()
    with gpu_locks(("0",), folder, poll_s=0.05) as held:
        assert held == [folder / "gpu-0.lock"]


def test_unusable_lock_dir_is_a_start_error_with_the_fix(smoke: Profile, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    server = RecordingServer(profile_on(smoke, "a", ("0",)), blocker, [])
    with pytest.raises(ServerStartError, match=r"cannot take the GPU locks of \[a\] in "
                       r".*not-a-dir/host-local: .*\n  fix: .*--bench-lock-dir"):
        server.get()


def test_cpu_and_base_url_profiles_take_no_lock(smoke: Profile, tmp_path: Path) -> None:
    for profile in (profile_on(smoke, "cpu", ()),
                    replace(profile_on(smoke, "ext", ("0",)), base_url="http://x:8080")):
        server = RecordingServer(profile, tmp_path, [])
        server.get()
        server.close()
    assert list(tmp_path.glob("*/*.lock")) == []


def test_engine_key_without_an_engine_is_the_host_url() -> None:
    assert engine_key(None, None) == "host-local"
    assert engine_key(None, "ssh://me@gpu-box") == "host-ssh_me_gpu-box"

    class Engine:
        def __init__(self, ident: str, root: str) -> None:
            self.answer = {"ID": ident, "Name": "gpu-box", "DockerRootDir": root}

        def info(self) -> dict[str, str]:
            return self.answer

    same = engine_key(Engine("ABC", "/var/lib/docker"), "tcp://gpu-box:2375")
    assert same == engine_key(Engine("ABC", "/var/lib/docker"), "ssh://gpu-box")
    assert same.startswith("gpu-box-")
    assert same != engine_key(Engine("ABC", "/srv/docker2"), "tcp://gpu-box:2376")
