"""What every `python -m east_ray.*` command shares: its output options and error boundary.

Output: the command's result (tables, a listing, JSON) goes to stdout; library messages go
through `logging` to stderr, `-v` adding debug detail and `-q` keeping only warnings and
errors. Progress bars (tqdm) show only on a terminal.

Errors: a `UserError` (a bad spec or argument, a missing or unreadable input, a download
that cannot finish), an `OSError` naming a file (a storage folder that cannot be written)
or a library that does not load prints one `error: ...` line and the command exits 2.
Anything else is a bug: Python's traceback and exit 1. "cannot write <path>" is said only
of errors on a path under the command's output folders; any other `OSError` is reported
with its own message and path.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from east_ray.errors import UserError

USER_ERROR = 2
_NATIVE = re.compile(r"\.so\b|shared object|undefined symbol|Could not load this library")
INSTALL_HINT = (
    "the installed packages are broken; check them with `python -m east_ray.check_install`"
)


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """`-v/--verbose` and `-q/--quiet`, read by `configure_logging`."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="also print debug messages")
    group.add_argument(
        "-q", "--quiet", action="store_true", help="print only warnings, errors and results"
    )


class _Format(logging.Formatter):
    """`message` for information, `warning: message` (etc.) above it, `name: message` below."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if record.levelno >= logging.WARNING:
            return f"{record.levelname.lower()}: {text}"
        if record.levelno < logging.INFO:
            return f"{record.name}: {text}"
        return text


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever `sys.stderr` is when a record comes (pytest and notebooks swap
    it; a handler holding the stream of its creation would write to a closed one)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def configure_logging(args: argparse.Namespace) -> None:
    """Send east_ray's log records to stderr at the level the output options chose."""
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    handler = _Stderr()
    handler.setFormatter(_Format("%(message)s"))
    logger = logging.getLogger("east_ray")
    logger.handlers[:] = [handler]
    logger.setLevel(level)


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
    message = str(exc)
    if isinstance(exc, (OSError, ImportError)) and _NATIVE.search(message):
        return f"{message}: {INSTALL_HINT}"
    return message


def run_command(command: Callable[[], int], outputs: Sequence[Path] = ()) -> int:
    """Run `command`; a user error becomes `error: <describe(exc)>` on stderr and exit 2."""
    try:
        return command()
    except (UserError, OSError) as exc:
        print(f"error: {describe(exc, outputs)}", file=sys.stderr)
        return USER_ERROR
    except ImportError as exc:  # a broken binary; any other ImportError is a bug
        if not _NATIVE.search(str(exc)):
            raise
        print(f"error: {describe(exc, outputs)}", file=sys.stderr)
        return USER_ERROR
