"""Errors of the directory sources. Bad entries are `SourceProblem`s, not exceptions:
these are for a source that cannot be read at all."""

from __future__ import annotations

from provisioner.errors import EXIT_ENVIRONMENT, HauspostError


class DirectorySourceError(HauspostError):
    """A source as a whole is unusable: an HR file lacks a mapped column, a header is empty."""


class DirectoryUnavailableError(DirectorySourceError):
    """The source cannot be reached or bound to: no connection, bad credentials, TLS refused,
    an unreadable file."""

    exit_code = EXIT_ENVIRONMENT
