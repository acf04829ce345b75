"""``python -m plugin <command>``: a small dispatcher; each command lives in its own module.

Commands register themselves through ``add_parser(subparsers)`` returning the function that
runs them; add new ones to COMMANDS.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from plugin.evaluation import cli
from plugin.report import cli as report_cli

Command = Callable[[argparse.Namespace], int]
COMMANDS: Sequence[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], Command]] = (
    cli.add_evaluate_parser,
    report_cli.add_report_parser,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m plugin",
                                     description="llama.cpp benchmark harness tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
