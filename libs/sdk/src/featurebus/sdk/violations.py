"""The error plugin code gets when its sandbox refuses something."""

from __future__ import annotations

__all__ = ["SandboxViolation"]


class SandboxViolation(PermissionError):
    """The sandbox refused an operation (a file, a connection, a process, a blob, a limit).

    A frame in which one happened fails with reason ``sandbox_violation``, even if the plugin
    caught the error; ``hint`` says what to do instead.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.hint = message, hint
