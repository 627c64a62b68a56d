"""Domain errors. The CLI turns each into one line `Error: …` and its exit code."""

from __future__ import annotations

# Documented exit codes (README "Exit codes"). Keep in sync with the README table.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_ENVIRONMENT = 4


class HauspostError(Exception):
    """Base class: a failure the user can act on, shown as one line."""

    exit_code = EXIT_FAILURE


class ConfigError(HauspostError):
    """A config or policy file is wrong: names the file, the key path and what was expected."""

    exit_code = EXIT_CONFIG

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.file = file
        self.key = key
        where = ""
        if file and key:
            where = f"{file}: {key}: "
        elif file:
            where = f"{file}: "
        elif key:
            where = f"{key}: "
        super().__init__(where + message)


class EnvironmentProblemError(HauspostError):
    """The machine is not as needed: a port in use, an unwritable directory, a missing binary."""

    exit_code = EXIT_ENVIRONMENT
