"""Command-line commands. ``evaluate``: score an EvalPlus samples file in the sandbox."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from plugin.config.defaults import SANDBOX_IMAGE
from plugin.datasets import PINS, load_dataset
from plugin.errors import BenchError
from plugin.evaluation.judging import evaluate_samples
from plugin.evaluation.plan import Limits
from plugin.evaluation.results import TaskVerdict
from plugin.evaluation.samples import load_samples
from plugin.sandbox import protocol

log = logging.getLogger(__name__)
PROGRESS_S = 15.0  # seconds between progress lines on stderr

EVALUATE_HELP = "score an EvalPlus samples file (pass@1, base and plus) in the sandbox"
EVALUATE_EPILOG = f"""\
Datasets: HumanEval+ {PINS["humaneval", False].version} and MBPP+ \
{PINS["mbpp", False].version} (EvalPlus release
files). Samples for task ids not in the dataset are ignored (with a warning); tasks without
a sample are scored as failures.

Time limits: per test max(MIN, FACTOR x the reference solution's time on this machine).
The default policy, --limits harness, uses MIN {protocol.DEFAULT_MIN_TIME_LIMIT:g} s and
scales FACTOR by measured load; evalplus 0.3.1 uses MIN 1 s, unscaled (--limits
evalplus). Verdicts the clock decided (timeouts, passes near their limit or past the
other policy's) are counted in the summary ("clock_decided") and listed with -v.
"""


def add_evaluate_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> Callable[[argparse.Namespace], int]:
    parser = sub.add_parser("evaluate", help=EVALUATE_HELP, description=EVALUATE_HELP,
                            epilog=EVALUATE_EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=["humaneval", "mbpp"])
    parser.add_argument("--samples", required=True, type=Path, metavar="FILE.jsonl",
                        help='one JSON object per line: "task_id" and "solution" (a full '
                             'program) or "completion" (appended to the prompt)')
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where verdicts.jsonl and eval_results.json go "
                             "(default: FILE_eval/ next to the samples)")
    parser.add_argument("--sandbox", choices=["docker", "local"], default="docker",
                        help="docker (default) or local: a subprocess, NOT a sandbox")
    parser.add_argument("--image", default=SANDBOX_IMAGE,
                        help="sandbox image (default %(default)s)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="parallel checkers in the sandbox (default: CPU count)")
    parser.add_argument("--mini", action="store_true", help="HumanEval+ Mini (fewer tests)")
    parser.add_argument("--datasets-dir", type=Path, metavar="DIR",
                        help="directory with the release files, searched first")
    parser.add_argument("--limits", choices=list(protocol.POLICIES),
                        default=protocol.HARNESS,
                        help="limit policy: harness (default: min 4 s, factor 4 scaled by "
                             "load) or evalplus (evalplus 0.3.1's: min 1 s, factor 4)")
    parser.add_argument("--min-time-limit", type=float, metavar="S",
                        help="minimum per-test time limit in seconds (default: the "
                             "policy's; evalplus 0.3.1's is 1.0, the harness's 4.0)")
    parser.add_argument("--gt-time-limit-factor", type=float, metavar="X",
                        help="per-test limit = X * reference time (default: the "
                             "policy's, 4.0)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    parser.set_defaults(run=run_evaluate)
    return run_evaluate


def run_evaluate(args: argparse.Namespace) -> int:
    """Print a one-line JSON summary; on a BenchError print one message and return 2."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(message)s", stream=sys.stderr)
    try:
        summary = _evaluate(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: verdicts judged so far are kept; run again to resume",
              file=sys.stderr)
        return 130
    print(json.dumps(summary))
    return 0


def _evaluate(args: argparse.Namespace) -> dict[str, object]:

    if args.workers is not None and args.workers < 1:
        raise BenchError(f"--workers must be at least 1 (got {args.workers})")
    for flag, value in (("--min-time-limit", args.min_time_limit),
                        ("--gt-time-limit-factor", args.gt_time_limit_factor)):
        if value is not None and value <= 0:
            raise BenchError(f"{flag} must be positive (got {value})")
    if not args.samples.is_file():
        raise BenchError(f"--samples {args.samples}: no such file; fix: pass an EvalPlus "
                         "samples .jsonl")
    search = [args.datasets_dir] if args.datasets_dir else []
    dataset = load_dataset(args.dataset, mini=args.mini, search_dirs=search)
    solutions = load_samples(args.samples, dataset)
    out = _output_dir(args)
    limits = Limits.named(args.limits, min_time_limit=args.min_time_limit,
                          gt_time_limit_factor=args.gt_time_limit_factor)
    log.info("limits: %s", limits.describe())
    result = evaluate_samples(
        dataset, solutions, out, sandbox=args.sandbox, image=args.image, workers=args.workers,
        limits=limits, on_verdict=_Progress(len(dataset.tasks)),
    )
    for task_id, why in result.clock_decided().items():
        log.info("clock-decided: %s: %s", task_id, why)
    return {**result.summary(), "limits": limits.policy}


class _Progress:
    """One line on stderr every PROGRESS_S seconds while verdicts arrive (not only -v)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.seen = 0
        self.last = time.monotonic()

    def __call__(self, verdict: TaskVerdict) -> None:
        self.seen += 1
        now = time.monotonic()
        if now - self.last >= PROGRESS_S and self.seen < self.total:
            self.last = now
            print(f"evaluate: {self.seen}/{self.total} judged", file=sys.stderr, flush=True)


def _output_dir(args: argparse.Namespace) -> Path:
    out: Path = args.out or args.samples.with_name(args.samples.stem + "_eval")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        origin = "--out" if args.out else f"the default next to --samples {args.samples}"
        raise BenchError(f"cannot create the output directory {out} ({origin}): "
                         f"{exc.strerror}; fix: pass a writable --out DIR") from None
    return out
