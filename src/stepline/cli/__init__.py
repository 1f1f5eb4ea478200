"""The ``stepline`` command line."""

from __future__ import annotations


def main() -> None:
    """Entry point of the ``stepline`` command."""
    raise SystemExit("stepline: the command line is being built")
