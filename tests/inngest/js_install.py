"""``npm ci`` of the JS SDK apps (``js/``), once per lock file: the tests' fixture
(``conftest._npm_ci``) and ``scripts/test`` (which starts it before the virtualenv exists, beside
its set-up, lint and type check) share this file and its lock. Standard library only.

Run as a script: install (exit code 1 with npm's output on failure, 2 without Node)."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

JS_DIR = Path(__file__).parent / "js"


def node_missing() -> bool:
    """Whether Node.js (``node`` and ``npm``) is missing from PATH."""
    return shutil.which("node") is None or shutil.which("npm") is None


def install() -> None:
    """``npm ci`` in ``js/`` unless its ``node_modules`` was installed from this very lock file
    (several processes wait on one lock file; the first installs, the others find it done)."""
    stamp = JS_DIR / "node_modules" / ".stepline-lock-copy.json"
    lock = (JS_DIR / "package-lock.json").read_bytes()
    with open(JS_DIR / ".npm-ci.lock", "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_bytes() == lock:
            return
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"],
            cwd=JS_DIR,
            check=True,
            timeout=300,
        )
        stamp.write_bytes(lock)


if __name__ == "__main__":
    if node_missing():
        sys.exit(2)
    try:
        install()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        sys.exit(1)
