"""Typed errors. Each message is one line that names the offending file or value and the fix.

The command-line entry points turn any :class:`CogenError` into that line on stderr and exit code 2.
"""
from __future__ import annotations

import os
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


def exit_code(fn: Callable[..., object], *args, **kwargs) -> int:
    """Run `fn`: the one path from an error to an exit code. 0 when it returns; a :class:`CogenError` prints its one
    line on stderr and gives 2; a closed output pipe (`cogen info | head -3`) ends quietly with 1."""
    try:
        fn(*args, **kwargs)
        return 0
    except CogenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away: point stdout at nothing, or flushing it at exit would raise once more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def cli_exit(fn: Callable[..., object]) -> Callable[..., None]:
    """Wrap a `main()` so that it exits with `exit_code`'s code when that is not 0."""

    def wrapped(*args, **kwargs) -> None:
        code = exit_code(fn, *args, **kwargs)
        if code:
            sys.exit(code)

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped
