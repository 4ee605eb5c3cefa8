"""Exit codes and one-line errors shared by every fliplab command line.

Every CLI (``python -m deepfl.run``, ``theory.verify``, ``figures``, ``fldata``) runs its body under
:func:`main_guard`, so an expected failure prints ONE line ``error: WHAT`` on stderr and exits with
a code a script can branch on:

====  =====================================================================================
0     success
1     a check that must hold failed (``theory.verify``), or a run whose result is undefined
2     usage or config error: a bad flag, key or value, impossible parameters (argparse too)
3     I/O or data error: a path that cannot be read or written, a damaged or missing file
130   interrupted (Ctrl-C)
====  =====================================================================================

Anything else (a bug) keeps its traceback: hiding it behind a one-line message would hide the bug.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fldata.params import RENAMED_KEY_WARNING

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_IO = 3
EXIT_INTERRUPTED = 130

ErrorTypes = tuple[type[BaseException], ...]


class UsageError(ValueError):
    """A bad flag, config key or value, or an impossible combination of parameters (exit 2)."""


class InputOutputError(OSError):
    """A path that cannot be read or written, or a file that is damaged or missing (exit 3)."""


class CheckFailed(RuntimeError):
    """A result that must hold does not, e.g. a run whose global model diverged (exit 1)."""


def _data_types() -> ErrorTypes:
    from fldata.datasets import DataError

    return (OSError, DataError, InputOutputError)


def exit_code(error: BaseException, usage: ErrorTypes = (), data: ErrorTypes = ()) -> int | None:
    """The exit code of ``error``, or ``None`` if it is not an expected error (a bug).

    ``usage`` and ``data`` add a CLI's own error types to :class:`UsageError` and the I/O types
    (``OSError``, ``fldata.datasets.DataError``). When several match (``DataError`` is also a
    ``ValueError``), the most specific class in the error's MRO decides.
    """
    usage_types: ErrorTypes = (UsageError, *usage)
    data_types: ErrorTypes = (*_data_types(), *data)
    table = (
        [(CheckFailed, EXIT_CHECK_FAILED)]
        + [(kind, EXIT_USAGE) for kind in usage_types]
        + [(kind, EXIT_IO) for kind in data_types]
    )
    mro = type(error).__mro__
    matches = [(mro.index(kind), code) for kind, code in table if kind in mro]
    return min(matches)[1] if matches else None


def one_line(error: BaseException) -> str:
    """The error's message on one line: its first line, and its last line (the hint) if it had
    more.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    if len(lines) == 1:
        return lines[0]
    return f"{lines[0].rstrip(':')}; {lines[-1]}"


def _renamed_key_shower(previous: Callable[..., None]) -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints a renamed-key warning as one stderr line
    (``warning: <message>``) and hands every other warning to ``previous``."""

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        if issubclass(category, DeprecationWarning) and re.match(RENAMED_KEY_WARNING, str(message)):
            print(f"warning: {message}", file=sys.stderr)
        else:
            previous(message, category, *args, **kwargs)

    return show


def main_guard(body: Callable[[], int], usage: ErrorTypes = (), data: ErrorTypes = ()) -> int:
    """Run ``body()`` and return its exit status; expected errors become one stderr line and their
    code.

    Args:
        body: the CLI's work; returns its own status (0, or 1 for a failed must-hold check).
        usage, data: extra exception types of this CLI meaning exit 2 and exit 3 (see
        :func:`exit_code`).
    """
    try:
        with warnings.catch_warnings():
            # a renamed config key is the user's to fix: say so on the command line, once each
            warnings.filterwarnings("default", RENAMED_KEY_WARNING, DeprecationWarning)
            warnings.showwarning = _renamed_key_shower(warnings.showwarning)
            return body()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        code = exit_code(error, usage, data)
        if code is None:
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return code


def _probe(folder: Path, what: str, shown: Path) -> None:
    """Create and delete a temporary file in existing ``folder``; InputOutputError if that fails."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".fliplab-probe-"):
            pass
    except OSError as error:
        raise InputOutputError(
            f"{what} {shown} is not writable: {error.strerror or error}"
        ) from None


def check_writable_dir(path: str | os.PathLike[str], what: str) -> Path:
    """Raise :class:`InputOutputError` unless folder ``path`` exists writable or can be created;
    creates nothing.

    Every CLI calls this on its output and cache folders BEFORE any data is read, so an unwritable
    folder costs nothing. The nearest existing ancestor must be a folder that takes a probe file
    (not ``os.access``: read-only mounts and root's privileges make it unreliable).
    """
    folder = Path(path).expanduser().absolute()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is" if existing == folder else f"cannot be created: {existing} is"
        raise InputOutputError(f"{what} {folder} {where} not a folder")
    _probe(existing, what, folder)
    return folder


def writable_dir(path: str | os.PathLike[str], what: str) -> Path:
    """Create folder ``path`` if needed and prove it writable; else :class:`InputOutputError`."""
    folder = check_writable_dir(path, what)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputOutputError(
            f"{what} {folder} cannot be created: {error.strerror or error}"
        ) from None
    _probe(folder, what, folder)
    return folder


def check_writable_file(path: str | os.PathLike[str], what: str) -> Path:
    """Raise :class:`InputOutputError` unless file ``path`` could be written (not a folder, folder
    writable).
    """
    target = Path(path).expanduser()
    if target.is_dir():
        raise InputOutputError(f"{what} {target} is a folder; give a file name")
    check_writable_dir(target.parent, f"the folder of {what}")
    return target
