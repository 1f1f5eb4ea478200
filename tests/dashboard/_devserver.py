"""A real ``stepline dev`` serving ``shop_app`` on a free loopback port, and Debian's headless
Chromium driven by Playwright: shared by the browser tests and ``scripts/screenshots.py``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import forkserver

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# Debian's chromium-headless-shell: the same Blink and V8 as its full ``chromium``, without the
# browser's UI layers (what Playwright itself runs for headless tests). The full browser in
# headless mode cost about twice the CPU: test_dashboard_browser.py 29.1-30.5 s of CPU against
# 13.4-14.1 s (cgroup-counted, alternated, load 5.7-7.3). STEPLINE_CHROMIUM picks another build.
CHROMIUM = os.environ.get("STEPLINE_CHROMIUM", "/usr/bin/chromium-headless-shell")
_URL = re.compile(r"(http://127\.0\.0\.1:\d+)")


@contextmanager
def dev_server(directory: Path, *args: str, command: str = "dev") -> Iterator[str]:
    """Start ``stepline <command> shop_app:app`` on a fresh SQLite file in ``directory`` (port
    0: a free one); yield its URL once it serves; stop it (SIGINT, then SIGKILL) at the end."""
    out = directory / f"stepline-{command}.out"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(HERE), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    env.pop("STEPLINE_DB", None)
    argv = [sys.executable, "-m", "stepline.cli", command, "shop_app:app"]
    argv += ["--db", str(directory / "stepline.db"), "--port", "0", *args]
    # forked from a warm interpreter (tests/forkserver.py)
    proc = forkserver.popen_logged(argv, cwd=HERE, env=env, preload=forkserver.CLI, log=out)
    try:
        deadline = time.monotonic() + 30
        url = None
        while url is None:
            found = _URL.search(out.read_text(errors="replace"))
            if found:
                url = found.group(1)
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"stepline {command} did not start:\n{out.read_text()}")
            time.sleep(0.05)  # real time: poll interval, bounded by the deadline
        yield url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
