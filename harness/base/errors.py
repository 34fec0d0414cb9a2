"""The one root of every error the harness reports to a person.

A `HarnessError` is written for a person: its message is one line (a few for
`messages` where several things are wrong at once) and it carries the exit status the
``harness`` command ends with, so the command prints any of them the same way
without a list of classes (``requests``' ``RequestException`` and ``httpx``'s
``HTTPError`` are the model). Anything else reaching the command is a bug in the
harness, printed with its class name.
"""

from __future__ import annotations

from typing import ClassVar

#: the command ran and failed, or the machine lacks what it needs
EXIT_FAILED = 1
#: the command was asked for something it cannot do (bad arguments, nothing to run on)
EXIT_USAGE = 2


class HarnessError(Exception):
    """A failure explained to a person; ``exit_status`` is what ``harness`` exits with."""

    exit_status: ClassVar[int] = EXIT_FAILED

    def messages(self) -> list[str]:
        """The lines to print, one per problem (default: the message itself)."""
        return [str(self) or type(self).__name__]


class UsageError(HarnessError):
    """Arguments the command cannot use, or nothing to run OpenSIPS with: exit 2."""

    exit_status = EXIT_USAGE
