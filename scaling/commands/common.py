"""Argument helpers shared by the subcommands' parsers."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


def add_home(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", default=argparse.SUPPRESS, help="run home (default ./runs or $SCALING_HOME)")


@dataclass(frozen=True)
class Subcommand:
    """One subcommand of a command with several (`scaling sweep create`): its parser's words, its
    arguments (`--home` is added last to every one) and the function that runs it."""
    name: str
    run: Callable[[argparse.Namespace], int]
    arguments: Callable[[argparse.ArgumentParser], None]
    help: str
    description: str

    def add_to(self, subparsers) -> None:
        q = subparsers.add_parser(self.name, help=self.help, description=self.description)
        self.arguments(q)
        add_home(q)
        q.set_defaults(func=self.run)


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


def check_output_file(path: str, flag: str) -> None:
    """Refuse, before any work, an output file whose folder is missing or that names a folder."""
    import os

    from scaling.errors import UsageError

    if path == "-":
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a folder; give a file name")
    if not os.path.isdir(folder):
        raise UsageError(f"{flag} {path}: no folder {folder} (create it first)")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{flag} {path}: the folder {folder} is not writable")


def check_output_dir(path: str, flag: str) -> None:
    """Refuse, before any work, an output folder that is a file or lies under one, or cannot be written."""
    import os

    from scaling.errors import UsageError

    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a file; give a folder")
    probe = os.path.abspath(path)
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UsageError(f"{flag} {path}: {probe} is a file, so no folder can be made under it")
    if not os.access(probe, os.W_OK):
        raise UsageError(f"{flag} {path}: {probe} is not writable")


def refresh_index(home, sweep_id: str | None = None) -> None:
    """Bring the index up to date with the run directories that tasks of other engines wrote (Ray,
    SLURM with a task per point, W&B agents sharing the home), so every command that reads it counts the
    same runs whichever engine ran them. A home with no index yet, or one that cannot be written (a
    read-only mount), is read as it stands."""
    import os

    from scaling.runs import RunHome, StorageError, rebuild

    home = RunHome.of(home)
    if not os.path.exists(home.db_path):
        return
    try:
        rebuild.refresh_from_files(home, sweep_id)
    except StorageError:
        pass


def number_above(low: float, strict: bool = False, whole: bool = False):
    """An argparse type: a number (a whole one with `whole`) above `low`, or at least `low`."""

    def parse(text: str):
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a {'whole ' if whole else ''}number") from None
        if value < low or (strict and value == low) or value != value:
            raise argparse.ArgumentTypeError(f"{text!r}: must be {'above' if strict else 'at least'} {low}")
        return value

    return parse


def typed_value(text: str):
    """128 -> 128, 1e-3 -> 0.001, stdlib -> 'stdlib': so a written spec reads as one typed by hand."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_budgets(text: str, flag: str = "--at") -> list[float]:
    """FLOP budgets from "1e21,1e24" (empty items skipped); each positive and finite."""
    from scaling.errors import UsageError

    budgets = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise UsageError(f"{flag} takes FLOP budgets like 1e21,1e24; got {item!r}") from None
        if not (value > 0 and value != float("inf")):
            raise UsageError(f"{flag} budgets must be positive and finite; got {item!r}")
        budgets.append(value)
    return budgets


def add_agent_options(p: argparse.ArgumentParser) -> None:
    """The options of anything that starts sweep agents (`sweep agent`, `sweep slurm`)."""
    p.add_argument("--count", type=positive_int, help="stop after this many runs (default: until none is left)")
    p.add_argument("--lease", type=positive_float, default=60.0, metavar="SECONDS",
                   help="claim lease, renewed every quarter of it; a dead agent's run is taken over after "
                        "it lapses (default 60)")
    p.add_argument("--isolate", action="store_true",
                   help="run each run in its own `python -m scaling.cli train` process (no compile reuse)")
    p.add_argument("--wandb", choices=("auto", "off", "offline", "online"),
                   help="override the runs' W&B mode (e.g. off for speed)")
