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
