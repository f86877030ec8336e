"""`scaling`: the parser and the dispatch. Each subcommand lives in scaling.commands; every sweep spec
names this module as its `program`."""
from __future__ import annotations

import argparse
import sys

from scaling.commands import bench, compare, dashboard, data, demo, family, fit, report, runs, sweep, train
from scaling.commands import eval as eval_command
from scaling.errors import UsageError

COMMANDS = (train, family, bench, data, report, dashboard, demo, fit, sweep, runs, eval_command, compare)


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (with a pointer to --help) and exit 2, like every other
    bad input; the subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="scaling",
        description="Scaling-law workbench: train transformer families, track runs, fit laws, report.",
    )
    parser.add_argument("--home", help="run home (default ./runs or $SCALING_HOME)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not hasattr(args, "home"):
        args.home = None
    try:
        return int(args.func(args) or 0)
    except UsageError as err:
        print(f"scaling {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
