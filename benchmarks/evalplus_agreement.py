"""Per-task agreement of a harness run with ``evalplus.evaluate`` 0.3.1 on its own samples.

    .venv/bin/python benchmarks/evalplus_agreement.py reports/bench-gemma3-270m/humaneval
    .venv/bin/python benchmarks/evalplus_agreement.py reports/bench-gemma3-270m/mbpp --json

Reads the run's ``samples.jsonl`` (the programs the harness judged) and its
``eval/eval_results.json``, runs ``evalplus.evaluate`` on the same samples against a
release file holding just the run's tasks (its ``HUMANEVAL_OVERRIDE_PATH`` /
``MBPP_OVERRIDE_PATH``: it refuses a samples file that lacks tasks), and prints both
scores and every task whose base or plus status differs. The model's code never runs on
this host: evalplus runs in a throwaway container of the sandbox image with no network,
this interpreter's site-packages (evalplus and its dependencies) mounted read-only. Same
time rules as the harness (its Limits); ``EVALPLUS_MAX_MEMORY_BYTES=-1`` lifts evalplus's
per-test address-space cap (docs/EVALUATION.md: its memory fault). Exit status 1 when a
task other than HumanEval/32 (the find_zero fix, docs/EVALUATION.md) differs.
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
                      work: Path, image: str | None = None) -> dict[str, Any]:
    """evalplus.evaluate's ``eval`` section for ``samples`` (run in a container)."""
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
    limits = Limits()
    container = client.containers.run(
        image or os.environ.get("SANDBOX_IMAGE", DEFAULT_IMAGE),
        ["python3", "/work/run.py", dataset, "/work/samples.jsonl",
         str(limits.min_time_limit), str(limits.gt_time_limit_factor)],
        entrypoint=[], detach=True, network_mode="none", working_dir="/tmp",
        environment={"PYTHONPATH": "/deps", override: f"/work/{subset.name}",
                     "HOME": "/tmp", "EVALPLUS_MAX_MEMORY_BYTES": "-1"},
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
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    ours = json.loads((run_dir / "eval" / "eval_results.json").read_text())["eval"]
    dataset = summary["dataset"]
    theirs = evalplus_evaluate(client, dataset, run_dir / "samples.jsonl", sorted(ours), work)
    differ = {t: {"evalplus": {f: theirs[t][0][f] for f in FIELDS},
                  "harness": {f: ours[t][0][f] for f in FIELDS}}
              for t in ours if t in theirs
              and any(theirs[t][0][f] != ours[t][0][f] for f in FIELDS)}

    def score(results: dict[str, Any], field: str) -> int:
        return sum(all(r[0][f] == "pass" for f in FIELDS[:FIELDS.index(field) + 1])
                   for r in results.values())

    return {"dataset": dataset, "n_tasks": len(ours), "missing": sorted(set(ours) - set(theirs)),
            "harness": {"base": score(ours, "base_status"), "plus": score(ours, "plus_status")},
            "evalplus": {"base": score(theirs, "base_status"),
                         "plus": score(theirs, "plus_status")},
            "differ": differ}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="<reports>/<profile>/<dataset>")
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = parser.parse_args(argv)
    import docker

    client = docker.from_env(timeout=120)
    try:
        with tempfile.TemporaryDirectory(prefix="evalplus-agreement-") as tmp:
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
        print(f"tasks whose status differs: {len(found['differ'])}")
        for task, both in found["differ"].items():
            print(f"  {task}: evalplus {both['evalplus']}, harness {both['harness']}")
    return 1 if set(found["differ"]) - ALLOWED or found["missing"] else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
