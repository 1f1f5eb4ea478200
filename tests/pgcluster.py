"""A throwaway PostgreSQL cluster for the test run, made with the system's own binaries.

``start_cluster(folder)`` runs ``initdb`` and ``pg_ctl start`` on a free loopback port under
``folder`` (as the ``postgres`` system user when the tests run as root: PostgreSQL refuses to run
as root) and returns a ``Cluster``; ``stop_cluster`` stops it. ``durable=False`` (the functional
suite) runs with ``fsync=off``: a crash of the machine loses the cluster, which is thrown away
anyway; the durability tests and the benchmarks ask for a durable one.

``initdb`` costs about a second of CPU (3-5 s on a loaded machine): with ``STEPLINE_PG_TEMPLATE``
naming a folder (the test run sets it), the first cluster's ``initdb`` is made there once and every
cluster after it starts from a copy of it (the tests that start clusters of their own).
"""

from __future__ import annotations

import fcntl
import glob
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ports import free_port as _free_port

SUPERUSER = "stepline"


class NoPostgres(Exception):
    """PostgreSQL's binaries are not installed (``scripts/setup`` installs them)."""


@dataclass(frozen=True)
class Cluster:
    """A running cluster: its data folder, port, and the binaries that run it."""

    data: str
    port: int
    bindir: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"


def find_bindir() -> str:
    """The folder of ``initdb`` and ``pg_ctl``: PATH, else Debian's newest
    ``/usr/lib/postgresql/N/bin``. Raises ``NoPostgres`` when there is none."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return str(Path(os.path.realpath(found)).parent)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if not candidates:
        raise NoPostgres(
            "PostgreSQL is not installed (no pg_ctl on PATH or in /usr/lib/postgresql/*/bin): "
            "run scripts/setup (it installs Debian's postgresql package)"
        )
    return str(Path(candidates[-1]).parent)


def _as_owner(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its binaries as the ``postgres`` user then."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", "postgres", "--", *command]


def _give_to_postgres(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, "postgres", "postgres")


def start_cluster(folder: Path, *, durable: bool = False) -> Cluster:
    """Create and start a cluster in ``folder`` (which must exist) on a free loopback port."""
    bindir = find_bindir()
    folder.chmod(0o755)  # the postgres user must reach the data folder inside
    data = folder / "data"
    template = os.environ.get(TEMPLATE_VARIABLE)
    if template:
        subprocess.run(["cp", "-a", str(_template(bindir, Path(template))), str(data)], check=True)
    else:
        _initdb(bindir, data)
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(data),
        "max_connections": "300",
        "shared_buffers": "64MB",
        "fsync": "on" if durable else "off",
        "synchronous_commit": "on" if durable else "off",
        "full_page_writes": "on" if durable else "off",
        "log_min_messages": "fatal",
    }
    with (data / "postgresql.conf").open("a") as conf:
        for name, value in settings.items():
            conf.write(f"{name} = '{value}'\n")
    last: subprocess.CalledProcessError | None = None
    for _ in range(3):  # a free port may be taken between the probe and the start
        port = _free_port()
        command = [
            f"{bindir}/pg_ctl",
            "-D",
            str(data),
            "-o",
            f"-p {port}",
            "-l",
            str(data / "server.log"),
            "-w",
            "-t",
            "60",
            "start",
        ]
        try:
            subprocess.run(_as_owner(command), check=True, capture_output=True)
        except subprocess.CalledProcessError as exc:
            last = exc
            continue
        _stop_when_gone(Cluster(str(data), port, bindir))
        return Cluster(str(data), port, bindir)
    log = data / "server.log"
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise RuntimeError(f"PostgreSQL did not start: {last and last.stderr!r}\n{tail}")


TEMPLATE_VARIABLE = "STEPLINE_PG_TEMPLATE"


def _initdb(bindir: str, data: Path) -> None:
    data.mkdir()
    _give_to_postgres(data)
    subprocess.run(
        _as_owner(
            [
                f"{bindir}/initdb",
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        ),
        check=True,
        capture_output=True,
    )


def _template(bindir: str, folder: Path) -> Path:
    """The data folder ``initdb`` made in ``folder`` (made by the first caller, under a lock:
    the test run's processes share it); never started, so a copy of it is a fresh cluster."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    data = folder / "data"
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "done").exists():
            shutil.rmtree(data, ignore_errors=True)  # a maker killed halfway
            _initdb(bindir, data)
            (folder / "done").touch()
    return data


WATCH_PID_VARIABLE = "STEPLINE_PG_WATCH_PID"
_watchers: list[subprocess.Popen[bytes]] = []  # kept: a collected running Popen warns


def _stop_when_gone(cluster: Cluster) -> None:
    """Stop the cluster once the process it serves has ended, however it ended: a killed test
    run (SIGKILL, a timeout) left its clusters running for hours. The process watched is the
    one named by ``STEPLINE_PG_WATCH_PID`` (the pytest run's controller), else this one."""
    pid = os.environ.get(WATCH_PID_VARIABLE) or str(os.getpid())
    stop = _as_owner([f"{cluster.bindir}/pg_ctl", "-D", cluster.data, "-m", "immediate", "stop"])
    watch = 'while kill -0 "$0" 2>/dev/null; do sleep 1; done; exec "$@"'
    _watchers.append(
        subprocess.Popen(
            ["sh", "-c", watch, pid, *stop],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    )


def stop_cluster(cluster: Cluster, *, mode: str = "immediate") -> None:
    """Stop the cluster (its data folder stays; the caller removes it)."""
    subprocess.run(
        _as_owner([f"{cluster.bindir}/pg_ctl", "-D", cluster.data, "-m", mode, "-w", "stop"]),
        check=False,
        capture_output=True,
    )


def restart_cluster(cluster: Cluster, *, mode: str = "fast") -> None:
    """Restart the cluster on its port (the tests of reconnecting after a restart)."""
    subprocess.run(
        _as_owner(
            [
                f"{cluster.bindir}/pg_ctl",
                "-D",
                cluster.data,
                "-m",
                mode,
                "-o",
                f"-p {cluster.port}",
                "-l",
                f"{cluster.data}/server.log",
                "-w",
                "restart",
            ]
        ),
        check=True,
        capture_output=True,
    )


def start_again(cluster: Cluster) -> None:
    """Start a stopped cluster again on its port (a test's outage ends)."""
    subprocess.run(
        _as_owner(
            [
                f"{cluster.bindir}/pg_ctl",
                "-D",
                cluster.data,
                "-o",
                f"-p {cluster.port}",
                "-l",
                f"{cluster.data}/server.log",
                "-w",
                "-t",
                "60",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )


def freeze(cluster: Cluster) -> list[int]:
    """Stop (SIGSTOP) every process of the cluster, its postmaster first (it forks no new
    backend then): the server answers nothing while its machine's kernel still acknowledges
    what clients send (a frozen server, a storage stall). Returns their ids, for ``thaw``."""
    postmaster = int(Path(cluster.data, "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGSTOP)
    stopped = [postmaster]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:  # its parent's id
            os.kill(int(entry), signal.SIGSTOP)
            stopped.append(int(entry))
    return stopped


def thaw(stopped: list[int]) -> None:
    """Continue (SIGCONT) the processes ``freeze`` stopped, its postmaster last."""
    for pid in reversed(stopped):
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
