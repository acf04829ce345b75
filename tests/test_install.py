"""The plugin as a user installs it: ``pip install .`` gives a ``pytest11`` entry point, so
the options and fixtures work from any folder with ``--bench-config``.

A real wheel is built from this checkout (pip, with build isolation, as ``pip install .``
does) and installed with pip into a fresh virtual environment that borrows only the
third-party dependencies of ``.venv``; ``plugin`` is imported from the installed copy.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import support

ROOT = Path(__file__).resolve().parents[1]
ENTRY_POINT = "[pytest11]\nplugin.pytest_plugin = plugin.pytest_plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the python of a fresh venv with the wheel installed)."""
    base = tmp_path_factory.mktemp("install")
    # the project's tracked files only (an in-tree build/ could leak stale modules in)
    source = base / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                             capture_output=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(base / "dist"), str(source)], check=True, timeout=300)
    (wheel,) = (base / "dist").glob("llama_bench_harness-*.whl")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(base / "venv")],
                   check=True, timeout=120)
    python = base / "venv" / "bin" / "python"
    site = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                    str(site), str(wheel)], check=True, timeout=300)
    # the dependencies (pytest, docker, evalplus...) from .venv, after the installed copy
    (site / "zz-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return wheel, python


def pytest_in(python: Path, folder: Path, *args: str,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith("BENCH_") and k not in ("CI", "PYTHONPATH")}
    return subprocess.run([str(python), "-m", "pytest", "-p", "no:cacheprovider", *args],
                          cwd=folder, env={**clean, **(env or {})}, text=True,
                          capture_output=True, timeout=900, check=False)


def test_the_wheel_declares_the_entry_point_and_ships_the_sandbox(
        installed: tuple[Path, Path]) -> None:
    wheel, python = installed
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert ENTRY_POINT in archive.read(entry_points).decode()
    assert "plugin/sandbox/evaluate.py" in names
    where = subprocess.run([str(python), "-c", "import plugin; print(plugin.__file__)"],
                           cwd=wheel.parent, check=True, capture_output=True,
                           text=True).stdout
    assert str(ROOT) not in where
    assert "site-packages" in where


def test_installed_plugin_stays_out_of_a_folder_that_is_no_benchmark(
        installed: tuple[Path, Path], tmp_path: Path) -> None:
    _wheel, python = installed
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert True\n")
    plain = pytest_in(python, tmp_path, "test_plain.py")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "llama-bench:" not in plain.stdout  # no notice, no reaping, no report

    shutil.copy(ROOT / "bench_tests" / "test_canary.py", tmp_path)
    asks = pytest_in(python, tmp_path, "test_canary.py")
    assert asks.returncode != 0
    assert "needs bench profiles, but there is no" in asks.stdout + asks.stderr
    assert "fix: pass --bench-config PATH/models.conf" in asks.stdout + asks.stderr


def canary_project(folder: Path) -> Path:
    """A user's folder: a models.conf with the shipped canary, its reference scores."""
    folder.mkdir(parents=True)
    conf = folder / "models.conf"
    conf.write_text(
        f"[DEFAULT]\nMODELS_DIR={ROOT / 'models' / 'canary'}\n"
        "CPU_IMAGE=local/llama.cpp:server\nHEALTH_TIMEOUT=120\n\n"
        "[bench-canary]\nNAME=Canary\nMODEL=canary-humaneval.gguf\nCTX_SIZE=4096\n"
        "N_GPU_LAYERS=0\nFIT=off\nEXTRA_ARGS=--jinja -np 1 -t 1\nQUANT=F32\n")
    shutil.copy(ROOT / "reference-scores.json", folder)
    return conf


def test_a_repository_conftest_does_not_register_the_plugin_twice(
        installed: tuple[Path, Path], tmp_path: Path) -> None:
    _wheel, python = installed
    canary_project(tmp_path / "project")
    project = tmp_path / "project"
    (project / "conftest.py").write_text('pytest_plugins = ["plugin.pytest_plugin"]\n')
    shutil.copy(ROOT / "bench_tests" / "test_canary.py", project)
    listed = pytest_in(python, project, "--co", "-q", "test_canary.py")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert "test_canary.py::test_canary_verdicts[bench-canary]" in listed.stdout


@pytest.mark.docker
def test_installed_plugin_benchmarks_from_any_folder_with_bench_config(
        installed: tuple[Path, Path], tmp_path: Path) -> None:
    """Real canary run: the tests in one folder, models.conf in another."""
    from plugin.datasets import SHARED_DATASETS_DIR

    _wheel, python = installed
    conf = canary_project(tmp_path / "config")
    tests = tmp_path / "work"
    tests.mkdir()
    shutil.copy(ROOT / "bench_tests" / "test_canary.py", tests)
    done = pytest_in(python, tests, "test_canary.py", "--bench-config", str(conf),
                     "--bench-limit", "3", "--bench-reports-dir", str(tmp_path / "reports"),
                     env={"BENCH_DATASETS_DIR": str(SHARED_DATASETS_DIR)})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert [(r["profile"], r["dataset"]) for r in summary["results"]] == \
        [("bench-canary", "humaneval")], output
    outcomes = support.junit_outcomes(tmp_path / "reports" / "junit.xml")
    assert outcomes == {"test_canary_verdicts[bench-canary]": ("passed", "")}, output
