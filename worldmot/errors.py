"""The one exception type a user sees: a one-line message naming the file or key and what was expected."""


class WorldmotError(Exception):
    """Bad input or a failed precondition; the CLI prints it on one line and exits non-zero."""


class ConfigError(WorldmotError):
    """A config key that is unknown, of the wrong type or missing."""
