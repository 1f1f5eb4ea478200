"""The group-commit writer's own thread: started at the first job, ended by ``close``, by the
writer being dropped, and at interpreter exit only after the jobs queued before it."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
import threading
import weakref
from pathlib import Path

from stepline.engine.writer import BatchWriter
from stepline.store.interface import StoreTx
from stepline.store.memory import MemoryStore

DEADLINE = 30.0


def _writer_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "stepline-writer"]


def test_the_thread_starts_at_the_first_job_and_ends_when_closed() -> None:
    before = set(_writer_threads())
    writer = BatchWriter(MemoryStore())
    assert set(_writer_threads()) == before  # nothing written yet: no thread
    assert writer.submit_sync(lambda tx: 7) == 7
    [thread] = set(_writer_threads()) - before
    assert writer.submit_sync(lambda tx: 8) == 8  # the same thread serves every job
    assert set(_writer_threads()) - before == {thread}
    writer.close()
    assert not thread.is_alive()  # close joins it


def test_a_writer_dropped_without_close_is_collected_and_its_thread_ends() -> None:
    before = set(_writer_threads())
    writer = BatchWriter(MemoryStore())
    assert writer.submit_sync(lambda tx: 1) == 1
    [thread] = set(_writer_threads()) - before
    dropped = weakref.ref(writer)
    del writer
    gc.collect()
    assert dropped() is None  # the idle thread does not keep the writer (nor its store) alive
    thread.join(DEADLINE)
    assert not thread.is_alive()


def test_jobs_queued_at_interpreter_exit_are_committed_before_it_exits(tmp_path: Path) -> None:
    # the writer thread is a daemon (a thread waiting for jobs must not hold the interpreter),
    # so an exit hook finishes what was queued, as a thread pool's thread did
    # The job cannot end before the interpreter exits: it waits for the end of a pipe whose
    # other end the script closes as its last statement, then takes a moment (the interpreter,
    # unless the hook holds it, is gone by then: without the hook this fails every time)
    marker = tmp_path / "committed"
    script = textwrap.dedent(
        f"""
        import asyncio, os, threading, time
        from pathlib import Path
        from stepline.engine.writer import BatchWriter
        from stepline.store.memory import MemoryStore

        started = threading.Event()
        exiting, last = os.pipe()

        def slow(tx):
            started.set()
            os.read(exiting, 1)  # b"": the script closed its end, the interpreter exits
            # real time, on purpose: it gives an interpreter not held by the exit hook time
            # to end first (the test then fails, as it must); with the hook, the exit waits
            # for this job whatever the time, so it cannot fail a correct writer
            time.sleep(0.2)  # real time, on purpose: see above
            Path({str(marker)!r}).write_text("done")

        async def main():
            writer = BatchWriter(MemoryStore())
            writer.submit(slow)  # queued, never awaited, the writer never closed

        asyncio.run(main())
        started.wait({DEADLINE})
        os.close(last)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=DEADLINE)
    assert marker.read_text() == "done"


def test_a_job_from_a_thread_after_another_job_finished_is_served() -> None:
    # the thread waits for the next wake-up between drains; a drain asked by a blocked thread
    # wakes it as one asked by an event loop does
    writer = BatchWriter(MemoryStore())
    try:
        results: list[int] = []

        def job(n: int) -> object:
            def run(tx: StoreTx) -> int:
                return n

            return run

        for n in range(20):
            done = threading.Thread(target=lambda n=n: results.append(writer.submit_sync(job(n))))
            done.start()
            done.join(DEADLINE)
        assert results == list(range(20))
    finally:
        writer.close()
