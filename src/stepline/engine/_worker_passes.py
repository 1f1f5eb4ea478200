"""A worker's passes: start one per leased run, run it through its driver, and end it.

A mixin of ``Worker`` (``engine/worker.py``): what happens to one leased run, from its load to
the end of its pass (the store's errors sorted into the run's, the worker's and nobody's).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from stepline.engine._attempts import fail_refused_pass, fail_unloaded_run
from stepline.engine._minority_first import Ahead
from stepline.engine._outage import StoreOutage
from stepline.engine._wake import WakeSignal
from stepline.engine.driver import PYTHON
from stepline.engine.engine import Engine
from stepline.engine.executor import IN_PROCESS
from stepline.errors import (
    LeaseLostError,
    PassCancelledError,
    StoreError,
    StoreRefusedValue,
    StoreUnavailable,
)
from stepline.store.records import TERMINAL_STATUSES, Lease, RunState

log = logging.getLogger("stepline.worker")


class WorkerPasses:
    """Starting, running and ending the passes of a worker's leased runs."""

    engine: Engine
    active: dict[str, asyncio.Task[None]]
    passes: int
    outage: StoreOutage
    _function_of: dict[str, str | None]
    _starts: dict[str, Ahead]
    _next_pass: dict[str, Lease]
    _cut_short: set[str]
    _context: contextvars.Context
    _wake: WakeSignal

    if TYPE_CHECKING:  # provided by Worker

        def _fail(self, error: StoreError) -> None: ...

        def _pass_end_looks(self) -> bool: ...

    def _start_pass(self, lease: Lease) -> None:
        """Start a pass of a leased run, or, if this run's previous pass is still ending here,
        right after that one. A pass's last commit releases its lease (the run is due again at
        once if an event resolved its wait or a child finished meanwhile), then the pass waits
        for the function to unwind (its ``finally:`` blocks): a lease taken in that window is
        kept for the next pass, never dropped (dropped, the run stayed leased with no pass
        until the lease expired). Such a lease's state is read when its pass starts, not
        taken from the lease: the run may have been cancelled while the previous pass
        unwound (review R1 of the fifteenth stop)."""
        if lease.run_id in self.active:
            self._next_pass[lease.run_id] = replace(lease, loaded=None)
            ahead = self._starts.pop(lease.run_id, None)
            if ahead is not None:  # not one of its attempt's passes to wait for
                ahead.loaded(lease.run_id)
            return
        task = asyncio.create_task(self._pass(lease), context=self._context.copy())
        self.active[lease.run_id] = task
        self._function_of[lease.run_id] = lease.function_id

    async def _pass(self, lease: Lease) -> None:
        engine = self.engine
        # its lease attempt's order (``_minority_first``): a backlog's pass starts after others
        ahead = self._starts.pop(lease.run_id, None) if self._starts else None
        ran = False  # ran its course (not cut short, refused, cancelled or crashed)
        try:
            if ahead is not None and not ahead.leads(lease.run_id):
                await ahead.opened.wait()
            state = await self._load(lease)
            if ahead is not None:
                ahead.loaded(lease.run_id)
                ahead = None
            if state is None or state.run.status in TERMINAL_STATUSES:  # cancelled meanwhile
                return
            if lease.due_at is not None:  # leased ahead: loaded by now, executes when due
                await engine.clock.sleep_until(lease.due_at, asyncio.Event())
            fn = engine.functions.get(state.run.function_id)
            if fn is None:  # lease_due leases only registered functions: never reached
                log.warning("run %s: leased without its function here", lease.run_id)
                return
            driver = IN_PROCESS if fn.driver == PYTHON else engine.drivers[fn.driver]
            await driver.run_pass(engine, lease, state, fn)
            self.passes += 1
            ran = True
        except PassCancelledError:
            log.info("run %s: cancelled during its pass", lease.run_id)
        except LeaseLostError:
            log.info("run %s: lease lost, another worker owns it now", lease.run_id)
        except StoreUnavailable as exc:
            # not the run's fault: no attempt is counted; it is leased again once the store is
            # back (its steps since the last commit run again, as after a crash)
            self.outage.failed(exc)
            self._cut_short.add(lease.run_id)
            log.debug("run %s: pass ended, the store is unavailable: %s", lease.run_id, exc)
        except StoreRefusedValue as exc:
            # a value of this pass, not the store's failure: a failed attempt of the run (issue
            # 6 item 1), never the worker's end (item 7)
            await self._refused(lease, exc)
        except StoreError as exc:
            self._fail(exc)
        except Exception:
            log.exception(
                "run %s: pass crashed; it will be retried when its lease expires", lease.run_id
            )
        finally:
            if ahead is not None:  # ended before its run was loaded
                ahead.loaded(lease.run_id)
            self.active.pop(lease.run_id, None)
            self._function_of.pop(lease.run_id, None)
            following = self._next_pass.pop(lease.run_id, None)
            if following is not None:
                self._start_pass(following)
            if not ran or self._pass_end_looks():  # its slot is free: may a look find work?
                self._wake.set()

    async def _refused(self, lease: Lease, error: StoreRefusedValue) -> None:
        """The store refused a commit of the pass of ``lease`` (``fail_refused_pass``). If even
        the failed attempt cannot be written, the run is leased again once its lease expires,
        which ``lease_due``'s count of passes without progress bounds."""
        try:
            await fail_refused_pass(self.engine, lease, error)
        except (LeaseLostError, PassCancelledError):
            log.info("run %s: no longer this worker's to fail", lease.run_id)
        except StoreUnavailable as exc:
            self.outage.failed(exc)
            self._cut_short.add(lease.run_id)
        except StoreRefusedValue as exc:
            log.error("run %s: its failed attempt could not be written: %s", lease.run_id, exc)
        except StoreError as exc:
            self._fail(exc)
        except Exception:
            log.exception("run %s: its failed attempt could not be written", lease.run_id)

    async def _load(self, lease: Lease) -> RunState | None:
        """The leased run; None if it is gone or could not be loaded (an undecodable row, an
        unknown record): that counts as a failed attempt of the run (``fail_unloaded_run``)."""
        engine = self.engine
        try:
            if lease.loaded is not None:  # read by the lease's transaction
                return lease.loaded()
            return await engine.read(engine.store.load_run, lease.run_id)
        except (LeaseLostError, PassCancelledError, StoreError):  # StoreUnavailable too
            raise
        except Exception as exc:
            await fail_unloaded_run(engine, lease, exc)
            return None
