"""Run by ``test_pg_reconnect.py`` inside a network namespace of its own (``unshare -n``):
``send`` while the link to PostgreSQL is down without a reset ever reaching the sender (a
network failure, the server's machine gone). Prints one JSON line: what the send during the
failure did (``error``: its ``StoreUnavailable``; ``blocked``: still waiting after ``WAIT``
seconds of it), and how many copies of its event are stored once the link is back and the sender
retried it with its id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pgtest
from stepline import App, Event, StoreUnavailable
from stepline.store.records import EventFilter

WAIT = 60.0  # seconds; Linux gives up on unacknowledged data after ~15 min by default


def _link(state: str) -> None:
    subprocess.run(["ip", "link", "set", "lo", state], check=True)


def main() -> None:
    _link("up")  # a new namespace's loopback starts down
    with pgtest.private_cluster(durable=False) as cluster:
        url = pgtest.migrated_database(cluster) + "?connect_timeout=2"
        app = App("partitioned", db=url)
        app.send(Event("before/failure"))  # the pool's connections are open and idle
        _link("down")  # packets go nowhere: no reset, no error, nothing acknowledged
        outcome: dict[str, object] = {}

        def send() -> None:
            began = time.monotonic()
            try:
                app.send(Event("during/failure", id="sent-once"))
                outcome["sent"] = True
            except StoreUnavailable as exc:
                outcome["error"] = str(exc)
            outcome["seconds"] = round(time.monotonic() - began, 1)

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        thread.join(WAIT)
        outcome["blocked"] = thread.is_alive()  # while the link was down
        _link("up")
        thread.join(WAIT)
        if not thread.is_alive():
            app.send(Event("during/failure", id="sent-once"))  # the sender's retry
            found = app.engine.store.list_events(EventFilter(name="during/failure"))
            outcome["stored"] = sum(1 for e in found if not e.duplicate)
        print(json.dumps(outcome), flush=True)
        if thread.is_alive():
            os._exit(1)  # the send's thread holds a connection: no clean close
        app.close()


if __name__ == "__main__":
    sys.exit(main())
