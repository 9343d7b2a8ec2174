"""Exception hierarchy for :mod:`ausm`.

Every error deliberately raised by the package derives from :class:`AUSMError`,
so callers can catch all of them with one ``except`` clause.  Errors caused by
bad user input additionally derive from :class:`ValueError` so generic code that
expects ``ValueError`` for invalid arguments keeps working.
"""

from __future__ import annotations

__all__ = ["AUSMError", "InputError", "CheckpointError", "ConfigError"]


class AUSMError(Exception):
    """Base class of all errors raised on purpose by :mod:`ausm`."""


class InputError(AUSMError, ValueError):
    """Bad user input.

    Examples: a missing or corrupt video, a folder without frames, an image that
    cannot be decoded, a prompt mask of the wrong size or without any object,
    an empty prompt.
    """


class CheckpointError(AUSMError):
    """A model checkpoint is missing, unreadable or does not match the model."""


class ConfigError(AUSMError, ValueError):
    """A configuration value or configuration file is invalid."""


class TrainingError(AUSMError):
    """Training cannot continue (e.g. repeated non-finite losses)."""
