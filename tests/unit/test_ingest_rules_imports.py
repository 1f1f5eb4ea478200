"""The ingest order's modules import each other (``_ingest_rules`` binds its shortcuts,
``_resolving_rules`` and ``_cancel_rules``, once it is whole, at its end): each imports first
in a fresh interpreter, and ``ingest`` reaches the shortcuts' functions."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "first",
    [
        "stepline.store._ingest_rules",
        "stepline.store._resolving_rules",
        "stepline.store._cancel_rules",
        "stepline.store.sqlite._waits",
    ],
)
def test_each_module_of_the_ingest_order_imports_first(first: str) -> None:
    code = (
        f"import {first}\n"
        "from stepline.store import _ingest_rules as rules\n"
        "assert callable(rules._resolving_rules.resolving_only)\n"
        "assert callable(rules._cancel_rules.cancelling_only)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
