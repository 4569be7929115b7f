"""Exception types raised by eqdyn.

Every error names the offending argument (in backticks), shows the value, and says how to
fix it. All are subclasses of the builtin type a user would expect to catch.
"""

from __future__ import annotations


class EqdynError(Exception):
    """Base class of every error eqdyn raises on purpose."""


class DerivationError(EqdynError, ValueError):
    """An energy cannot be derived or compiled (bad term, unknown symbol, missing derivative)."""


class ConfigError(EqdynError, ValueError):
    """An option, flag or configuration value is invalid (unknown name, malformed value)."""


class DataError(EqdynError, ValueError):
    """A data set is missing, unreadable, truncated, mismatched or contains non-finite values."""


class ConvergenceError(EqdynError, RuntimeError):
    """The dynamics did not reach a steady state, or produced non-finite values."""


class CheckpointError(EqdynError, ValueError):
    """A run directory or checkpoint cannot be resumed (missing, corrupt or incompatible)."""
