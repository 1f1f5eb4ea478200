"""The sync body an SDK posts to ``POST /fn/register`` (out-of-band sync), read into records.

Both SDKs' shapes are accepted, and the body of an in-band sync reply: the app's name as
``appname`` (Python), ``appName`` (JS) or ``app_id`` (in-band), ``deploy_type`` or
``deployType``; informational fields (``sdk``, ``framework``, ``v``, ``capabilities``,
``featureObservations``) are kept as given. A function config is kept as sent in
``FunctionConfig.config``; ``stepline.drivers.inngest.map_app`` turns it into Stepline's
options (or refuses it). Malformed input raises ``ProtocolError`` naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stepline._text import MAX_ID_CHARS, clipped, name_problem
from stepline.drivers.inngest._errors import ProtocolError


@dataclass(frozen=True)
class FunctionConfig:
    """One function of a synced app: its slug (``<app id>-<fn id>``, also the ``fnId`` query
    value), display name, the URL its runs are driven through (with ``fnId`` and
    ``stepId=step``) and the whole config as sent."""

    slug: str
    name: str
    url: str
    config: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class AppRegistration:
    """An app's sync: its name (apps are keyed by it), serve URL and function configs."""

    app_name: str
    url: str
    functions: tuple[FunctionConfig, ...]
    sdk: str | None = None
    framework: str | None = None
    app_version: str | None = None
    capabilities: Mapping[str, Any] = field(default_factory=dict)


def _text(
    value: object, path: str, *, required: bool = True, max_chars: int | None = None
) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"{path}: expected a non-empty string, got {value!r}")
    problem = name_problem(value, len(value) if max_chars is None else max_chars)
    if problem is not None:  # stored as text (the same on every store)
        raise ProtocolError(f"{path}: {clipped(value)!r} {problem}")
    return value


def _function(raw: object, path: str) -> FunctionConfig:
    if not isinstance(raw, dict):
        raise ProtocolError(f"{path}: expected an object, got {type(raw).__name__}")
    slug = _text(raw.get("id"), f"{path}.id")
    assert slug is not None
    name = _text(raw.get("name"), f"{path}.name", required=False) or slug
    steps = raw.get("steps")
    if not isinstance(steps, dict) or not steps:
        raise ProtocolError(f"{path}.steps: expected an object with the function's step")
    first = next(iter(steps.values()))
    runtime = first.get("runtime") if isinstance(first, dict) else None
    if not isinstance(runtime, dict):
        raise ProtocolError(f"{path}.steps: a step without a runtime object")
    url = _text(runtime.get("url"), f"{path}.steps.runtime.url")
    assert url is not None
    return FunctionConfig(slug=slug, name=name, url=url, config=raw)


def parse_registration(body: bytes | Mapping[str, Any]) -> AppRegistration:
    """Read a ``POST /fn/register`` body or an in-band sync reply (bytes or decoded JSON).
    Raises ``ProtocolError``."""
    if isinstance(body, bytes | bytearray):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise ProtocolError(f"register body is not JSON: {exc}") from exc
    if not isinstance(body, Mapping):
        raise ProtocolError("register body: expected a JSON object")
    # appname: Python; appName: JS; app_id: an in-band sync reply (both SDKs)
    app_name = _text(
        body.get("appname", body.get("appName", body.get("app_id"))),
        "appName",
        max_chars=MAX_ID_CHARS,
    )
    url = _text(body.get("url"), "url")
    raw_functions = body.get("functions")
    if raw_functions is None:
        raw_functions = []
    if not isinstance(raw_functions, list):
        raise ProtocolError("functions: expected a list")
    functions = tuple(_function(raw, f"functions[{i}]") for i, raw in enumerate(raw_functions))
    slugs = [fn.slug for fn in functions]
    duplicates = sorted({s for s in slugs if slugs.count(s) > 1})
    if duplicates:
        raise ProtocolError(f"functions: duplicate ids {duplicates}")
    capabilities = body.get("capabilities")
    version = body.get("appVersion", body.get("app_version"))
    assert app_name is not None and url is not None
    return AppRegistration(
        app_name=app_name,
        url=url,
        functions=functions,
        sdk=body.get("sdk") if isinstance(body.get("sdk"), str) else None,
        framework=body.get("framework") if isinstance(body.get("framework"), str) else None,
        app_version=version if isinstance(version, str) else None,
        capabilities=capabilities if isinstance(capabilities, dict) else {},
    )
