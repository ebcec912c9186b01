"""Veil's errors as Python exceptions, with the exit codes of the ``veil`` command line.

Every exception carries ``exit_code``: 2 for what the caller must fix (arguments, key, policy,
overlapping paths), 1 for failures at run time, 3 for an instance held back. Messages name the
file or field and what to do, never an identifying value or key material.
"""

from typing import Optional


class VeilError(Exception):
    """Base class of Veil's exceptions."""

    exit_code = 1


class UsageError(VeilError):
    """Bad arguments, key, policy or paths: fix the named file or field and call again (CLI exit 2)."""

    exit_code = 2


class VeilRuntimeError(VeilError):
    """A failure at run time: I/O, an internal error (CLI exit 1). Nothing half-written is left."""

    exit_code = 1


class HeldBack(VeilError):
    """An instance was not released (CLI exit 3): ``reason`` is the code, ``detail`` the sentence."""

    exit_code = 3

    def __init__(self, reason: str, detail: Optional[str] = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
