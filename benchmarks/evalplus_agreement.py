"""Per-task agreement of the harness's verdicts with ``evalplus.evaluate`` 0.3.1.

    .venv/bin/python benchmarks/evalplus_agreement.py reports/bench-gemma3-270m/humaneval
    .venv/bin/python benchmarks/evalplus_agreement.py reports/bench-gemma3-270m/mbpp --json
    .venv/bin/python benchmarks/evalplus_agreement.py --samples FILE.jsonl --dataset mbpp \
        --limits evalplus

A run directory: reads the run's ``samples.jsonl`` (the programs the harness judged), its
``eval/eval_results.json`` and its limit policy and clock-decided verdicts
(``summary.json``). ``--samples``: judges an EvalPlus samples file with the harness first
(``plugin.evaluation.evaluate_samples``, in the sandbox, with ``--limits``). Then runs
``evalplus.evaluate`` on the same samples against a release file holding just those
tasks (its ``HUMANEVAL_OVERRIDE_PATH`` / ``MBPP_OVERRIDE_PATH``: it refuses a samples file
that lacks tasks), and prints both scores and every task whose base or plus status
differs. The model's code never runs on this host: evalplus runs in a throwaway container
of the sandbox image with no network, this interpreter's site-packages (evalplus and its
dependencies) mounted read-only. Same time rules as the harness run (its limit policy's
minimum and factor); ``EVALPLUS_MAX_MEMORY_BYTES=-1`` lifts evalplus's per-test
address-space cap (docs/EVALUATION.md: its memory fault; ``--evalplus-memory`` sets
another value). A task the harness flagged as decided by the clock is listed apart and
not counted as a difference. Exit status 1 when another task than HumanEval/32 (the
find_zero fix, docs/EVALUATION.md) differs.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("base_status", "plus_status")
ALLOWED = {"HumanEval/32"}  # evalplus 0.3.1's find_zero bug, fixed in the harness

EVALPLUS_IN_CONTAINER = """\
import sys
from evalplus.evaluate import evaluate
dataset, samples, minimum, factor = sys.argv[1:5]
evaluate(dataset, samples=samples, i_just_wanna_run=True, parallel=2,
         min_time_limit=float(minimum), gt_time_limit_factor=float(factor))
"""


def evalplus_evaluate(client: Any, dataset: str, samples: Path, tasks: list[str],
                      work: Path, image: str | None = None, limits: Any = None,
                      max_memory: str = "-1") -> dict[str, Any]:
    """evalplus.evaluate's ``eval`` section for ``samples`` (run in a container), with the
    time rules of ``limits`` (default: the harness's) and ``EVALPLUS_MAX_MEMORY_BYTES``."""
    from plugin.datasets import iter_records, load_dataset
    from plugin.evaluation.backends import DEFAULT_IMAGE
    from plugin.evaluation.plan import Limits

    full = load_dataset(dataset)
    subset = work / f"{dataset}-subset.jsonl"
    with subset.open("w", encoding="utf-8") as handle:
        for record in iter_records(gzip.decompress(full.path.read_bytes())):
            if record["task_id"] in tasks:
                handle.write(json.dumps(record) + "\n")
    (work / "samples.jsonl").write_bytes(samples.read_bytes())
    (work / "run.py").write_text(EVALPLUS_IN_CONTAINER, encoding="utf-8")
    work.chmod(0o777)
    override = "HUMANEVAL_OVERRIDE_PATH" if dataset == "humaneval" else "MBPP_OVERRIDE_PATH"
    limits = limits or Limits()
    container = client.containers.run(
        image or os.environ.get("SANDBOX_IMAGE", DEFAULT_IMAGE),
        ["python3", "/work/run.py", dataset, "/work/samples.jsonl",
         str(limits.min_time_limit), str(limits.gt_time_limit_factor)],
        entrypoint=[], detach=True, network_mode="none", working_dir="/tmp",
        environment={"PYTHONPATH": "/deps", override: f"/work/{subset.name}",
                     "HOME": "/tmp", "EVALPLUS_MAX_MEMORY_BYTES": max_memory},
        volumes={sysconfig.get_paths()["purelib"]: {"bind": "/deps", "mode": "ro"},
                 str(work): {"bind": "/work", "mode": "rw"}})
    try:
        status = container.wait(timeout=3600)
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    if status["StatusCode"] != 0:
        raise RuntimeError(f"evalplus.evaluate failed:\n{logs[-4000:]}")
    return dict(json.loads((work / "samples_eval_results.json").read_text())["eval"])


def compare(run_dir: Path, client: Any, work: Path) -> dict[str, Any]:
    """Both verdict sets of a run directory (``<reports>/<profile>/<dataset>``)."""
    from plugin.evaluation.plan import Limits

    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    ours = json.loads((run_dir / "eval" / "eval_results.json").read_text())["eval"]
    limits = Limits.named(summary.get("limits") or "harness")
    return _both(summary["dataset"], run_dir / "samples.jsonl", ours,
                 dict(summary.get("clock_decided") or {}), limits, client, work)


def compare_samples(dataset_name: str, samples: Path, limits: Any, client: Any, work: Path,
                    workers: int | None = None, max_memory: str = "-1") -> dict[str, Any]:
    """Judge an EvalPlus samples file with the harness, then compare with evalplus."""
    from plugin.datasets import load_dataset
    from plugin.evaluation.judging import evaluate_samples
    from plugin.evaluation.samples import load_samples

    dataset = load_dataset(dataset_name)
    solutions = load_samples(samples, dataset)
    result = evaluate_samples(dataset, solutions, work / "harness", workers=workers,
                              limits=limits, docker_client=client)
    ours = json.loads((work / "harness" / "eval_results.json").read_text())["eval"]
    ours = {t: r for t, r in ours.items() if t in solutions}
    clean = work / "samples.jsonl"  # full programs, as the harness judged them
    clean.write_text("".join(json.dumps({"task_id": t, "solution": s}) + "\n"
                             for t, s in solutions.items()), encoding="utf-8")
    return _both(dataset_name, clean, ours, result.clock_decided(), limits, client,
                 work / "evalplus", max_memory=max_memory)


def _both(dataset: str, samples: Path, ours: dict[str, Any], clock: dict[str, str],
          limits: Any, client: Any, work: Path, max_memory: str = "-1") -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    theirs = evalplus_evaluate(client, dataset, samples, sorted(ours), work, limits=limits,
                               max_memory=max_memory)
    differing = {t: {"evalplus": {f: theirs[t][0][f] for f in FIELDS},
                     "harness": {f: ours[t][0][f] for f in FIELDS}}
                 for t in ours if t in theirs
                 and any(theirs[t][0][f] != ours[t][0][f] for f in FIELDS)}
    differ = {t: d for t, d in differing.items() if t not in clock}
    clock_differ = {t: {**d, "clock": clock[t]} for t, d in differing.items() if t in clock}

    def score(results: dict[str, Any], field: str) -> int:
        return sum(all(r[0][f] == "pass" for f in FIELDS[:FIELDS.index(field) + 1])
                   for r in results.values())

    return {"dataset": dataset, "n_tasks": len(ours), "limits": limits.policy,
            "missing": sorted(set(ours) - set(theirs)),
            "harness": {"base": score(ours, "base_status"), "plus": score(ours, "plus_status")},
            "evalplus": {"base": score(theirs, "base_status"),
                         "plus": score(theirs, "plus_status")},
            "differ": differ, "clock_decided": clock, "clock_differ": clock_differ}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?", help="<reports>/<profile>/<dataset>")
    parser.add_argument("--samples", type=Path, help="an EvalPlus samples file instead")
    parser.add_argument("--dataset", choices=["humaneval", "mbpp"], help="with --samples")
    parser.add_argument("--limits", choices=["harness", "evalplus"], default="harness",
                        help="with --samples: the harness's limit policy")
    parser.add_argument("--workers", type=int, help="with --samples: sandbox workers")
    parser.add_argument("--evalplus-memory", default="-1", metavar="BYTES",
                        help="EVALPLUS_MAX_MEMORY_BYTES for evalplus (default -1: no cap)")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = parser.parse_args(argv)
    if (args.run_dir is None) == (args.samples is None) or (args.samples and not args.dataset):
        parser.error("give a run directory, or --samples FILE with --dataset")
    import docker
    from plugin.evaluation.plan import Limits

    client = docker.from_env(timeout=120)
    try:
        with tempfile.TemporaryDirectory(prefix="evalplus-agreement-") as tmp:
            if args.samples:
                found = compare_samples(args.dataset, args.samples, Limits.named(args.limits),
                                        client, Path(tmp), args.workers, args.evalplus_memory)
            else:
                found = compare(args.run_dir, client, Path(tmp))
    finally:
        client.close()
    if args.json:
        print(json.dumps(found, indent=1))
    else:
        n = found["n_tasks"]
        for who in ("harness", "evalplus"):
            s = found[who]
            print(f"{who:9s} base {s['base']}/{n}  plus {s['plus']}/{n}")
        print(f"limits: {found['limits']}; tasks whose status differs: {len(found['differ'])}")
        for task, both in found["differ"].items():
            print(f"  {task}: evalplus {both['evalplus']}, harness {both['harness']}")
        print(f"decided by the clock in the harness: {len(found['clock_decided'])}, of which "
              f"{len(found['clock_differ'])} differ")
        for task, why in found["clock_decided"].items():
            mark = " (differs)" if task in found["clock_differ"] else ""
            print(f"  {task}{mark}: {why}")
    return 1 if set(found["differ"]) - ALLOWED or found["missing"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
