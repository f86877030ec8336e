"""The one exception type for user mistakes: the CLI prints its message on one line and exits 2."""


class UsageError(ValueError):
    """Bad input from the user (a key, a value, a file); never a bug in the workbench."""
