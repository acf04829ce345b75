"""Entry point of the in-sandbox runner: ``python3 -m bench_sandbox {oracle,evaluate} ...``.

The ``__name__ == "__main__"`` guard matters: Python 3.14 (the sandbox image) starts
multiprocessing children with forkserver by default, which re-imports the main module.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench_sandbox")
    sub = parser.add_subparsers(dest="mode", required=True)
    oracle = sub.add_parser("oracle", help="trusted run: expected outputs of canonical solutions")
    oracle.add_argument("--dataset", required=True, help="path of the .jsonl.gz release file")
    oracle.add_argument("--dataset-name", required=True, choices=["humaneval", "mbpp"])
    oracle.add_argument("--out", required=True, help="directory for the oracle files")
    oracle.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    evaluate = sub.add_parser("evaluate", help="judge solutions against a cached oracle")
    evaluate.add_argument("--oracle", required=True, help="directory written by 'oracle'")
    evaluate.add_argument("--solutions", required=True, help="jsonl: key, task_id, solution")
    evaluate.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    evaluate.add_argument("--min-time-limit", type=float, required=True)
    evaluate.add_argument("--gt-time-limit-factor", type=float, required=True)
    evaluate.add_argument("--policy", default="harness", choices=["harness", "evalplus", "custom"])
    evaluate.add_argument("--no-load-scaling", dest="load_scaling", action="store_false")
    evaluate.add_argument("--memory-budget", type=int, default=4 << 30,
                          help="bytes of address space per test process above its own")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from . import runtime

    runtime.main_process_setup()
    try:
        if args.mode == "oracle":
            from . import oracle

            return oracle.build(args.dataset, args.dataset_name, args.out, args.workers)
        from . import evaluate

        settings = evaluate.Settings(args.oracle, args.solutions, args.workers,
                                     args.min_time_limit, args.gt_time_limit_factor,
                                     policy=args.policy, load_scaling=args.load_scaling,
                                     memory_budget=args.memory_budget)
        return evaluate.run(settings)
    except Exception as exc:
        runtime.emit("fatal", error=f"{type(exc).__name__}: {exc}")
        traceback.print_exc(file=sys.stderr)
        return 3
    finally:
        runtime.remove_private_scratch()


if __name__ == "__main__":
    sys.exit(main())
