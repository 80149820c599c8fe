"""The one base class of the errors avemotion expects: bad input, not bugs.

The command line turns an :class:`AvemotionError` into one line naming the file and the problem
(exit status 2); anything else is a bug and shows its traceback. Each subclass also derives from the
built-in exception it refines (``ValueError``, ``FileNotFoundError`` …), so callers may catch either.
"""

from __future__ import annotations


class AvemotionError(Exception):
    """An expected failure the user can act on; the message says what and where."""


class UsageError(AvemotionError, ValueError):
    """Settings or arguments that cannot work together, or a table that cannot serve the request."""


class MissingFileError(AvemotionError, FileNotFoundError):
    """A file or folder the command was pointed at does not exist."""


class WeightsUnavailable(AvemotionError, RuntimeError):
    """Pretrained weights could not be had; the message says what to do."""
