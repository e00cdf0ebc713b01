"""The one error convention of every `python -m east_ray.*` command.

A user error (a bad spec or argument, a missing or unreadable input, a storage folder that
cannot be written, a library that does not load) prints one `error: ...` line that names
the file or field, and the command exits 2. Anything else is a bug: Python's traceback and
exit 1. "cannot write <path>" is said only of errors on a path under the command's output
folders; any other `OSError` is reported with its own message and path.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

USER_ERROR = 2
# Everything our modules raise for bad input derives from these (SpecError, AudioError and
# CheckpointError are ValueErrors); commands add their own (downloads, weights) as extra.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError)
_NATIVE = re.compile(r"\.so\b|shared object|undefined symbol|Could not load this library")
INSTALL_HINT = (
    "the installed packages are broken; check them with `python -m east_ray.check_install`"
)


def _under(path: Path, roots: Sequence[Path]) -> bool:
    path = path.resolve()
    return any(path == root or root in path.parents for root in roots)


def describe(exc: BaseException, outputs: Sequence[Path] = ()) -> str:
    """The one-line message for a user error; `outputs` are the folders the command writes."""
    if isinstance(exc, OSError):
        filename = exc.filename
        reason = exc.strerror or str(exc)
        if filename is not None and _under(Path(filename), [p.resolve() for p in outputs]):
            return f"cannot write {filename}: {reason}"
        if filename is not None and str(filename) not in reason:
            return f"{filename}: {reason}"
    # str(KeyError) would quote the message
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    if isinstance(exc, (OSError, ImportError)) and _NATIVE.search(message):
        return f"{message}: {INSTALL_HINT}"
    return message


def run_command(
    command: Callable[[], int],
    outputs: Sequence[Path] = (),
    extra: tuple[type[BaseException], ...] = (),
) -> int:
    """Run `command`; a user error becomes `error: <describe(exc)>` on stderr and exit 2."""
    try:
        return command()
    except (*USER_ERRORS, *extra) as exc:
        print(f"error: {describe(exc, outputs)}", file=sys.stderr)
        return USER_ERROR
    except ImportError as exc:  # a broken binary; any other ImportError is a bug
        if not _NATIVE.search(str(exc)):
            raise
        print(f"error: {describe(exc, outputs)}", file=sys.stderr)
        return USER_ERROR
