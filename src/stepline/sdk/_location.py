"""Where the user's code called Stepline: definition errors point at the user's line.

A bad option (``TriggerCron("61 * * * *")``, ``Throttle(limit=0, ...)``) is detected deep inside
Stepline; its ``ConfigError`` gets the file and line of the nearest caller outside Stepline
appended to its message (``... (at shop.py:12)``) and kept in ``error.location``.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from stepline.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

_PACKAGE = str(Path(__file__).resolve().parent.parent) + os.sep
_PACKAGE_AS_IMPORTED = str(Path(__file__).parent.parent) + os.sep


def is_stepline_file(filename: str) -> bool:
    """Whether a code object's file is Stepline's own (or generated: ``<string>``, frozen)."""
    return filename.startswith(("<", _PACKAGE, _PACKAGE_AS_IMPORTED))


def shown_path(filename: str) -> str:
    """A path as a user reads it: relative to the current directory when under it."""
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if relative.startswith(os.pardir) else relative


def user_location() -> str | None:
    """``path:line`` of the innermost frame of the call stack outside Stepline."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not is_stepline_file(filename):
            return f"{shown_path(filename)}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return None


def warn_user(message: str) -> None:
    """``warnings.warn(message)`` (a ``UserWarning``) shown at the innermost frame of the call
    stack outside Stepline: the user's line."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and is_stepline_file(frame.f_code.co_filename):
        level, frame = level + 1, frame.f_back  # type: ignore[assignment]
    warnings.warn(message, UserWarning, stacklevel=level + 1)


def locate(exc: ConfigError) -> None:
    """Append the user's ``path:line`` to the error's message (once)."""
    if getattr(exc, "location", None) is not None:
        return
    where = user_location()
    if where is None:
        return
    exc.location = where  # type: ignore[attr-defined]
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]} (at {where})", *exc.args[1:])


def located(fn: F) -> F:
    """Decorate a definition-time validator: its ``ConfigError`` names the user's line."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            locate(exc)
            raise

    return wrapper  # type: ignore[return-value]
