"""The REST API (JSON, ``/api/v1/...``): functions, events, runs, skipped runs.

Every route reads or acts through the ``App``'s public verbs. Lists are newest first and paged
by an opaque ``cursor`` (``next_cursor`` in the answer, null on the last page). Side effects
(pause, resume, cancel, replay) are POST only.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from stepline.server.rest.events import event_routes
from stepline.server.rest.functions import function_routes
from stepline.server.rest.runs import run_routes

PREFIX = "/api/v1"


def rest_routes() -> list[BaseRoute]:
    """Every route of the REST API."""
    return [*function_routes(), *event_routes(), *run_routes()]
