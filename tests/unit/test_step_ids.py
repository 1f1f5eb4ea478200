"""A step id is looked at once (``sdk/step.py``'s set of ids found storable): a known id is
still refused inside another step's body, an id that cannot be stored is refused every time,
and the set stays bounded (an app may make a new id per call)."""

from __future__ import annotations

import pytest

from stepline.errors import ConfigError, NonRetriableError
from stepline.sdk import step as step_module


def test_a_known_id_is_still_refused_inside_a_steps_body() -> None:
    step_module._check_id("fetch")
    token = step_module.STEP_ATTEMPT.set(0)
    try:
        with pytest.raises(NonRetriableError):
            step_module._check_id("fetch")
    finally:
        step_module.STEP_ATTEMPT.reset(token)


def test_an_id_that_cannot_be_stored_is_refused_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(step_module, "_CHECKED_IDS", set())
    for _ in range(2):
        for bad in ("a\x00b", "", "\ud800", 5):
            with pytest.raises(ConfigError):
                step_module._check_id(bad)  # type: ignore[arg-type]
    assert not step_module._CHECKED_IDS


def test_the_known_ids_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(step_module, "_CHECKED_IDS", set())
    for n in range(step_module._MOST_CHECKED_IDS + 10):
        step_module._check_id(f"s{n}")
    assert len(step_module._CHECKED_IDS) == step_module._MOST_CHECKED_IDS
    step_module._check_id(f"s{step_module._MOST_CHECKED_IDS + 5}")  # unknown: looked at again
    with pytest.raises(ConfigError):
        step_module._check_id("x\x00")
