"""The ``linghub`` command's exit statuses, and the exception a command raises to end with one."""

from __future__ import annotations

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_AUTH = 0, 1, 2, 3, 4


class Failure(Exception):
    """A command failed with ``code`` after saying why on stderr."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code
