"""User errors: bad input that the person running a command can fix.

Everything east_ray raises for bad input (a spec field, an argument, the content of a
file, a name that is not in a registry, a download that cannot be completed) derives from
`UserError`, with a message that names the file or field, the value and the fix. Every
`python -m east_ray.*` command prints it as one `error: ...` line and exits 2
(`east_ray.cli`); any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Bad input; the message names it, the bad value and the fix."""


class BadValueError(UserError, ValueError):
    """A malformed or out-of-range value: a spec field, an argument, a file's content."""


class UnknownNameError(UserError, KeyError):
    """A name that is not in a registry; the message lists the known ones."""

    def __str__(self) -> str:  # KeyError's own str() would quote the message
        return str(self.args[0]) if self.args else ""
