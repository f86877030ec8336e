"""The command `wandb agent` runs for a point: W&B's macros expanded in the spec's `command`, and the
check that it calls `scaling train` with key=value items."""
from __future__ import annotations

import os
import re

from scaling.errors import UsageError

# W&B's agent expands these tokens of `command`; scaling train reads key=value (leading -- stripped).
ARG_MACROS = ("args", "args_no_hyphens")
OTHER_MACROS = ("env", "interpreter", "program")
_ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")
EXAMPLE_COMMAND = "[${env}, ${interpreter}, -m, scaling.cli, train, ${args_no_hyphens}]"


def render_command(spec, values: dict, *, interpreter: str = "python", env: str = "/usr/bin/env") -> list[str]:
    """The argv `wandb agent` builds for one run: ${envvar:X} substituted inside words, whole-word
    macros expanded, values written as Python's str() of what the server sent (as W&B does)."""
    args = [f"{k}={v}" for k, v in values.items()]
    expand = {"env": [env], "interpreter": [interpreter], "program": [spec.program or ""],
              "args": ["--" + a for a in args], "args_no_hyphens": args}
    argv = []
    for word in spec.command:
        word = _ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), word)
        if word.startswith("${") and word.endswith("}"):
            argv += expand[word[2:-1]]
        else:
            argv.append(word)
    return argv


def train_overrides(argv: list[str]) -> list[str]:
    """The key=value items of a rendered command, after checking that it is a `scaling train` call
    (the console script, `python -m scaling.cli`, or the scaling/cli.py program)."""
    if "train" not in argv:
        raise UsageError(f"{' '.join(argv)!r} does not call `scaling train`; expected e.g. {EXAMPLE_COMMAND}")
    i = argv.index("train")
    head = argv[:i]
    entry = any(os.path.basename(w) == "scaling" or w.endswith(os.path.join("scaling", "cli.py")) for w in head) or any(
        a == "-m" and b == "scaling.cli" for a, b in zip(head, head[1:]))
    if not entry:
        raise UsageError(f"{' '.join(head)!r} is not scaling's CLI; expected e.g. {EXAMPLE_COMMAND}")
    items = argv[i + 1:]
    if any(w.startswith("-") and "=" not in w for w in items):
        raise UsageError(f"{' '.join(items)!r}: options after train must be key=value")
    return items
