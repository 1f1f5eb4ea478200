"""At the end of a run, the CPU time its processes outside pytest's own spent: the session's
PostgreSQL cluster (its server processes, ended ones included) and the shared fork servers with
the processes they forked (CLI commands, ``stepline dev``/``server``/``worker``, SDK apps,
the crash and multi-process tests' workers). scripts/test prints pytest's processes' CPU after
the run: the two lines together say where a run's CPU went, and whether a slower run was a
heavier suite or a busier machine. Linux only (``/proc``); clusters a test starts for itself
(``pgtest.private_cluster``) are stopped before the end and not counted."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

import forkserver
import pgtest

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, list[int]] | None:
    """A process's parent and its utime, stime, cutime, cstime (clock ticks)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[1]), [int(v) for v in fields[11:15]]


def _tree_seconds(root: int) -> float:
    """``root``'s CPU time and its descendants': those alive by their own count, those ended
    (reaped by their parent) in their parent's cutime and cstime."""
    found = _stat(root)
    if found is None:
        return 0.0
    children: dict[int, list[tuple[int, list[int]]]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            children[stat[0]].append((int(entry), stat[1]))
    ticks, stack = sum(found[1]), [root]
    while stack:
        for pid, times in children[stack.pop()]:
            ticks += sum(times)
            stack.append(pid)
    return ticks / _TICK


def _cluster_seconds() -> float | None:
    folder = os.environ.get(pgtest.DIR_VARIABLE)
    state = Path(folder) / "cluster.json" if folder else None
    if state is None or not state.exists():
        return None  # no test used PostgreSQL
    try:
        data = json.loads(state.read_text())["data"]
        postmaster = int((Path(data) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return _tree_seconds(postmaster)


def _fork_servers_seconds() -> tuple[int, float]:
    folder = os.environ.get(forkserver.SHARED_VARIABLE)
    servers = list(Path(folder).glob("*.pid")) if folder else []
    total = 0.0
    for written in servers:
        try:
            total += _tree_seconds(int(written.read_text()))
        except (OSError, ValueError):
            continue
    return len(servers), total


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if hasattr(config, "workerinput") or not os.path.isdir("/proc"):
        return
    parts = []
    cluster = _cluster_seconds()
    if cluster is not None:
        parts.append(f"PostgreSQL (the session's cluster) {cluster:.1f} s")
    servers, forked = _fork_servers_seconds()
    if servers:
        kind = "fork server" if servers == 1 else "fork servers"
        parts.append(f"{servers} {kind} and the processes they forked {forked:.1f} s")
    if parts:
        terminalreporter.write_line("CPU outside pytest's processes: " + "; ".join(parts))
