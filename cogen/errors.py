"""Typed errors. Each message is one line that names the offending file or value and the fix.

The command-line entry points turn any :class:`CogenError` into that line on stderr and exit code 2.
"""
from __future__ import annotations

import sys
from typing import Callable


class CogenError(Exception):
    """Base class of every error cogen raises on purpose for bad input."""


class ConfigError(CogenError):
    """A config file or override is wrong (unknown key, wrong type)."""


class UnknownModalityError(CogenError, KeyError):
    """A modality name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RasterError(CogenError):
    """A raster is missing, unreadable, or does not fit its modality (bands, dtype, all nodata)."""


class GridMismatchError(RasterError):
    """Two rasters that must share a grid do not (CRS, transform or size)."""


class DatasetError(CogenError):
    """A dataset folder or manifest is missing or malformed."""


class CheckpointError(CogenError):
    """A checkpoint is missing, truncated, corrupted, or for other modalities."""


class UsageError(CogenError):
    """A command was asked for something contradictory (a target that is also an input, ...)."""


class OutputExistsError(CogenError):
    """An output exists and --overwrite was not given."""


def cli_exit(fn: Callable[[], object]) -> Callable[[], object]:
    """Wrap a `main()` so a :class:`CogenError` prints one line and exits with code 2."""

    def wrapped(*args, **kwargs) -> object:
        try:
            return fn(*args, **kwargs)
        except CogenError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped

