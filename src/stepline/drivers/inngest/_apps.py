"""SDK apps synced into a Stepline ``App``: their functions registered with driver ``"inngest"``.

An app is keyed by its name (``appName`` of its sync); a re-sync replaces its function set (a
function it no longer serves is removed, new ones added, changed ones replaced). A sync Stepline
cannot honour is refused whole (``SyncRefused``), leaving the app as it was.

* ``SdkApps.register(body)``: an app's ``POST /fn/register`` (out-of-band sync), the body parsed
  with ``parse_registration`` and mapped with ``map_app``. A body equal to the app's last one
  changes nothing (the same ``SyncedApp`` is returned; Inngest answers ``modified: false``).
* ``SdkApps.sync(url)``: Stepline asks the app at ``url`` to sync (``PUT``); the app answers by
  posting to the ``/fn/register`` of the server it is configured with (its API base URL).
"""

from __future__ import annotations

import dataclasses
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from stepline._tls import tls_context
from stepline.drivers.inngest._canonical import canonical_json
from stepline.drivers.inngest._driver import InngestDriver
from stepline.drivers.inngest._errors import ProtocolError
from stepline.drivers.inngest._execution import actions_body, batch_body
from stepline.drivers.inngest._mapping import DRIVER, SyncedFunction, map_app
from stepline.drivers.inngest._register import AppRegistration, parse_registration
from stepline.drivers.inngest._state import request_for
from stepline.drivers.inngest._sync import ServerKind, sync_request
from stepline.engine._housekeeping import cron_rows
from stepline.errors import ConfigError
from stepline.sdk.function import ignored_options

if TYPE_CHECKING:
    from stepline.engine.engine import Engine
    from stepline.sdk.app import App
    from stepline.store.interface import StoreTx


@dataclass(frozen=True)
class SyncedApp:
    """An app as last synced: its name, serve URL, SDK and functions."""

    name: str
    url: str
    sdk: str | None
    functions: tuple[SyncedFunction, ...]


class SdkApps:
    """The SDK apps of one Stepline ``App``; adds the ``"inngest"`` driver to its engine."""

    def __init__(
        self,
        app: App,
        driver: InngestDriver | None = None,
        *,
        server_kind: ServerKind = "dev",
    ) -> None:
        self.app = app
        self.driver = driver or InngestDriver()
        self.server_kind: ServerKind = server_kind
        self.apps: dict[str, SyncedApp] = {}
        self._bodies: dict[str, bytes] = {}  # each app's last registration body
        # the function ids each app has in ``app`` now: those of its last sync begun
        # (``_replace``), listed in ``apps`` once written, or not (its write failed, or is in
        # flight: a sync of it again replaces them, never clashes with them)
        self._registered: dict[str, frozenset[str]] = {}
        # each app's last sync begun, a token: a sync whose write failed puts back the app's
        # listed functions only if no later sync of it began meanwhile
        self._begun: dict[str, object] = {}
        _REGISTRY[app] = self  # replacing the SDK apps set up before, if any
        app.add_driver(DRIVER, self.driver, self._restore, replace=True)

    def _restore(self, engine: Engine) -> None:
        """Register the apps synced before into the store of ``engine`` (stored by
        ``register``), as last synced; one that no longer maps (Stepline changed) is logged
        and left for its next sync. Called whenever the app is attached to an engine."""
        for name, body in engine.store.sdk_apps(engine.app_id):
            try:
                registration = parse_registration(body)
                restored = self._replace(registration, map_app(registration))
                self.apps[registration.app_name] = restored
                self._bodies[name] = body
            except (ProtocolError, ConfigError) as exc:
                engine.logger.warning("SDK app %r not restored, sync it again: %s", name, exc)

    async def register(self, body: bytes | Mapping[str, Any]) -> SyncedApp:
        """Sync an app from its registration body, stored so a restart keeps it. Raises
        ``ProtocolError`` for a body that is not one, ``SyncRefused`` for a config Stepline
        cannot honour, ``ConfigError`` when a function id is taken by a native function or
        another app (the app stays as it was), ``ClockSkewError`` while this machine's clock is
        beyond the database's bound (its cron triggers' next fire times, the skips of events
        left to functions it removed, the functions live workers serve are this clock's). A
        sync whose write fails (``StoreUnavailable``) is not listed and its functions are not
        served here: the app's are those of its last listed sync (none if there was none),
        unless a later sync of it began meanwhile; synced again (the SDK retries a 503), the
        app replaces them, as it does those of a sync of it still in flight (two replicas of
        one app at once)."""
        raw = body if isinstance(body, bytes) else canonical_json(dict(body))
        registration = parse_registration(raw)
        unchanged = self.apps.get(registration.app_name)
        if unchanged is not None and self._bodies.get(registration.app_name) == raw:
            return unchanged
        synced = map_app(registration)
        engine = self.app.engine
        await engine.clock_watch.refuse_writes()  # before anything changes
        app = self._replace(registration, synced)
        for fn in synced:  # accepted, as Inngest's server does: said once a sync
            for message in ignored_options(fn.definition):
                engine.logger.warning("SDK app %r: %s", registration.app_name, message)
        name, now = registration.app_name, engine.clock.now()
        schedules = cron_rows(engine, now)
        triggers = engine.trigger_rows()

        def store(tx: StoreTx) -> None:
            tx.put_sdk_app(engine.app_id, name, raw, now)
            # its cron triggers' schedules (a worker writes them when it starts: an app synced
            # later would have none, and its crons would never fire)
            tx.sync_crons(engine.served, schedules)
            tx.sync_triggers(engine.app_id, triggers, now)  # its event triggers, for other senders

        self._begun[name] = mine = object()  # this sync, the app's last begun
        try:
            await engine.writer.write(store)
        except Exception:
            # not stored: its functions are not served here either (the app as last listed),
            # unless a later sync of it replaced them meanwhile
            if self._begun.get(name) is mine:
                listed = self.apps.get(name)
                self._serve(name, listed.functions if listed is not None else ())
            raise
        # listed (``/dev``, the dashboard) once its triggers are in the catalog: an event sent
        # by another process after it is seen synced reaches it
        self.apps[name] = app
        self._bodies[name] = raw
        return app

    def _replace(
        self, registration: AppRegistration, synced: tuple[SyncedFunction, ...]
    ) -> SyncedApp:
        name = registration.app_name
        taken = {f.id for f in self.app.functions} - self._registered.get(name, frozenset())
        clashes = sorted(f.definition.id for f in synced if f.definition.id in taken)
        if clashes:
            raise ConfigError(f"app {name!r}: function ids {clashes} are already registered")
        served = tuple(
            SyncedFunction(
                fn.config,
                dataclasses.replace(fn.definition, served_by=(name, fn.config.url)),
            )
            for fn in synced
        )
        self._serve(name, served)
        return SyncedApp(name, registration.url, registration.sdk, served)

    def _serve(self, name: str, served: tuple[SyncedFunction, ...]) -> None:
        """The functions of app ``name`` registered here become ``served`` (none: the app's
        functions removed), recorded in ``_registered``; but for those another app or a native
        function has here (a failed sync's undo: another app synced meanwhile took an id the
        app's listed sync has, which the failed one gave up; ``_replace`` refused clashes)."""
        ours = self._registered.get(name, frozenset())
        taken = {f.id for f in self.app.functions} - ours
        served = tuple(fn for fn in served if fn.definition.id not in taken)
        for fn_id in ours:
            self.app._remove(fn_id)
            self.driver.urls.pop(fn_id, None)
        for fn in served:
            self.app._add(fn.definition)
            self.driver.urls[fn.definition.id] = fn.config.url
        self._registered[name] = frozenset(f.definition.id for f in served)

    async def run_data(self, run_id: str, part: str) -> bytes | None:
        """What an SDK fetches when a request says ``use_api``: ``part`` ``"batch"`` (``GET
        /v0/runs/{run_id}/batch``: the run's events, a JSON array) or ``"actions"`` (``GET
        /v0/runs/{run_id}/actions``: its memo, ``{hashed step id: memo}``), as of now; None
        when there is no such run. Raises ``ValueError`` for another ``part``."""
        if part not in ("batch", "actions"):
            raise ValueError(f"no run data {part!r}")
        engine = self.app.engine
        state = await engine.read(engine.store.load_run, run_id)
        if state is None or not state.events:
            return None
        request = request_for(state)
        return batch_body(request) if part == "batch" else actions_body(request)

    def app_of(self, function_id: str) -> SyncedApp | None:
        """The SDK app serving ``function_id``, if one does."""
        for app in self.apps.values():
            if any(f.definition.id == function_id for f in app.functions):
                return app
        return None

    async def sync(self, url: str, *, timeout: float = 30.0) -> int:
        """Ask the app at ``url`` to sync (``PUT``); returns the app's HTTP status. The app
        registers itself with the server it is configured with, before it answers."""
        body, headers = sync_request(
            url, server_kind=self.server_kind, key=self.driver.signing_key, now=time.time()
        )
        async with httpx.AsyncClient(timeout=timeout, verify=tls_context()) as client:
            response = await client.put(url, content=body, headers=headers)
        return response.status_code


_REGISTRY: weakref.WeakKeyDictionary[App, SdkApps] = weakref.WeakKeyDictionary()


def registered_sdk_apps(app: App) -> SdkApps | None:
    """The SDK apps of ``app`` if they were set up (``SdkApps(app, ...)``), else None."""
    return _REGISTRY.get(app)


def sdk_apps(app: App) -> SdkApps:
    """The SDK apps of ``app`` (made, with a dev-mode driver, on first use)."""
    apps = _REGISTRY.get(app)
    if apps is None:
        apps = SdkApps(app)
    return apps
