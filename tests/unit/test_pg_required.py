"""A test that needs PostgreSQL and finds no binaries fails in CI (issue 8: "a missing
PostgreSQL in CI is a failure, never a skip"), whichever way the CI says so (``CI=true``,
``1`` or ``yes``, as the Inngest SDK tests read it), and is skipped elsewhere."""

from __future__ import annotations

import pytest

import pgtest


def _outcome(monkeypatch: pytest.MonkeyPatch, ci: str | None) -> BaseException:
    """What a test that needs PostgreSQL ends with when the binaries are missing."""
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    try:
        pgtest._missing("no initdb")
    except (pytest.fail.Exception, pytest.skip.Exception) as exc:  # caught here: not the test's
        return exc
    raise AssertionError("neither failed nor skipped")


@pytest.mark.parametrize("ci", ["true", "True", "1", "yes"])
def test_missing_binaries_fail_the_test_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    ended = _outcome(monkeypatch, ci)
    assert isinstance(ended, pytest.fail.Exception), repr(ended)
    assert str(ended) == "PostgreSQL is required in CI: no initdb"


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_missing_binaries_skip_the_test_elsewhere(
    monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    assert isinstance(_outcome(monkeypatch, ci), pytest.skip.Exception)
