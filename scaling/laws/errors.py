"""A bad argument to a `scaling.laws` function, named as the Python API names it (`holdout=3`,
`fixed={'E': -1.0}`), so that a notebook user reads their own call; a command that passed the value
from one of its flags re-raises it under the flag's name (`ArgumentError.for_flag`)."""
from __future__ import annotations

from scaling.errors import UsageError


class ArgumentError(UsageError):
    """`parameter` is the keyword of the laws function; `value` shows the argument in Python terms and
    `flag_value` as a command line gives it (when the two differ, as for one entry of `fixed`)."""

    def __init__(self, parameter: str, problem: str, value: str | None = None, flag_value: str | None = None):
        self.parameter, self.problem, self.value = parameter, problem, value
        self.flag_value = flag_value if flag_value is not None else value
        super().__init__(f"{parameter}={value}: {problem}" if value is not None else f"{parameter}: {problem}")

    def for_flag(self, flags: dict[str, str]) -> UsageError:
        """The same error in a command's terms: `flags` maps parameters to flag names ({"holdout":
        "--holdout"}); a parameter the command has no flag for keeps its Python name."""
        flag = flags.get(self.parameter)
        if flag is None:
            return self
        return UsageError(f"{flag} {self.flag_value}: {self.problem}" if self.flag_value is not None
                          else f"{flag}: {self.problem}")
