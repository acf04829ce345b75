"""Command-line commands. ``evaluate``: score an EvalPlus samples file in the sandbox."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from plugin.config.defaults import SANDBOX_IMAGE
from plugin.datasets import load_dataset
from plugin.errors import BenchError
from plugin.evaluation.judging import evaluate_samples
from plugin.evaluation.plan import Limits
from plugin.evaluation.samples import load_samples
from plugin.sandbox import protocol

EVALUATE_HELP = "score an EvalPlus samples file (pass@1, base and plus) in the sandbox"


def add_evaluate_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> Callable[[argparse.Namespace], int]:
    parser = sub.add_parser("evaluate", help=EVALUATE_HELP, description=EVALUATE_HELP)
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
    parser.add_argument("--min-time-limit", type=float, metavar="S",
                        default=protocol.DEFAULT_MIN_TIME_LIMIT,
                        help="minimum per-test time limit in seconds (default %(default)s)")
    parser.add_argument("--gt-time-limit-factor", type=float, metavar="X",
                        default=protocol.DEFAULT_GT_TIME_LIMIT_FACTOR,
                        help="per-test limit = X * reference time (default %(default)s)")
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
    if args.min_time_limit <= 0 or args.gt_time_limit_factor <= 0:
        raise BenchError("--min-time-limit and --gt-time-limit-factor must be positive")
    if not args.samples.is_file():
        raise BenchError(f"--samples {args.samples}: no such file; fix: pass an EvalPlus "
                         "samples .jsonl")
    search = [args.datasets_dir] if args.datasets_dir else []
    dataset = load_dataset(args.dataset, mini=args.mini, search_dirs=search)
    solutions = load_samples(args.samples, dataset)
    out = _output_dir(args)
    result = evaluate_samples(
        dataset, solutions, out, sandbox=args.sandbox, image=args.image, workers=args.workers,
        limits=Limits(args.min_time_limit, args.gt_time_limit_factor),
    )
    return result.summary()


def _output_dir(args: argparse.Namespace) -> Path:
    out: Path = args.out or args.samples.with_name(args.samples.stem + "_eval")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        origin = "--out" if args.out else f"the default next to --samples {args.samples}"
        raise BenchError(f"cannot create the output directory {out} ({origin}): "
                         f"{exc.strerror}; fix: pass a writable --out DIR") from None
    return out
