"""A batch flush never starts a run under a singleton, so it can never cancel one (issue 6
review item 5): the combination is refused when the function is defined, the way the debounce
flush case (tests/integration/test_system_events.py) is not."""

from __future__ import annotations

from typing import Any

import pytest

from stepline import App, BatchEvents, ConfigError, Context, Singleton, TriggerEvent


@pytest.mark.parametrize("mode", ["cancel", "skip"])
def test_batch_events_with_a_singleton_is_refused_so_no_batch_flush_cancels_one(
    app: App, mode: str
) -> None:
    # issue 6 review item 5: "a singleton cancel triggered by a BATCH flush emits
    # inngest/function.cancelled" has no case to test: no batched function has a singleton
    with pytest.raises(ConfigError, match=r"batch_events cannot be combined with .*singleton"):

        @app.function(
            id="batched",
            trigger=TriggerEvent("sync"),
            batch_events=BatchEvents(max_size=10, timeout="1m"),
            singleton=Singleton("event.data.u", mode),  # type: ignore[arg-type]
        )
        async def batched(ctx: Context) -> Any:
            return None
