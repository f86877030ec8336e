"""Argument helpers shared by the subcommands' parsers."""
from __future__ import annotations

import argparse


def add_home(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", default=argparse.SUPPRESS, help="run home (default ./runs or $SCALING_HOME)")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be positive")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value
