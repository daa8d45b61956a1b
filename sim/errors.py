"""User-facing errors: one line naming the file, the key and what was expected.

The CLI turns these into `error: ...` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations


class LorasimError(Exception):
    """Base for errors that are the user's input, not a bug."""


class ConfigError(LorasimError):
    def __init__(self, source: str, key: str, message: str):
        self.source, self.key, self.message = source, key, message
        super().__init__(f"{source}: {key}: {message}" if key else f"{source}: {message}")


class TraceError(LorasimError):
    def __init__(self, source: str, where: str, message: str):
        self.source, self.where, self.message = source, where, message
        super().__init__(f"{source}: {where}: {message}" if where else f"{source}: {message}")


class ScenarioError(LorasimError):
    """A scenario that validates but can never run (e.g. an adapter bigger than its slot)."""


class DeadlockError(LorasimError):
    """The simulation stopped making progress; the message names what is stuck."""
