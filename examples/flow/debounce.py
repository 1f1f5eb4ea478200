"""Debounce: one run with the last event, once events stop arriving.

See ``docs/flow-control/debounce.md``. A document is re-indexed when its author stops typing:
``Debounce(period="5m", key="event.data.docId", timeout="30m")``. Each edit pushes the run
back to 5 minutes after it; the run gets the *last* edit. ``timeout`` caps the wait: an author
who never pauses for 5 minutes still gets indexed 30 minutes after the first edit.

Run the demo with ``python -m examples.flow.debounce``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from examples.flow._support import advance, ended_runs, eventually, seconds_after
from stepline import App, Context, Debounce, Event, TriggerEvent
from stepline.testing import MockClock, TestEngine

app = App("flow-debounce")
MINUTE = 60


async def index_text(doc_id: str, text: str) -> str:
    """Stand-in for a search index update."""
    return f"{doc_id}: {text}"


@app.function(
    id="index-document",
    trigger=TriggerEvent("doc/edited"),
    debounce=Debounce(period="5m", key="event.data.docId", timeout="30m"),
)
async def index_document(ctx: Context) -> str:
    """Index a document's latest text, 5 minutes after its last edit (30 at most)."""
    data = ctx.event.data
    return await ctx.step.run("index", index_text, data["docId"], data["text"])


async def demo() -> dict[str, Any]:
    clock = MockClock(autojump=False)
    async with TestEngine(app, clock=clock) as t:
        t0 = clock.now()

        async def edit(doc: str, text: str) -> None:
            await t.send(Event("doc/edited", {"docId": doc, "text": text}))

        async def runs(count: int) -> list[Any]:
            """Wait until the function has ``count`` runs; return them once ended."""
            await eventually(lambda: _has_runs(t, count))
            return await ended_runs(t, "index-document")

        # doc-1: three edits a minute apart; doc-2: one edit, with doc-1's last
        for text in ("H", "He"):
            await edit("doc-1", text)
            advance(t, MINUTE)
        await edit("doc-1", "Hello")
        await edit("doc-2", "Draft")
        pending = len(await t.runs(function_id="index-document"))
        print(f"+{round(clock.now() - t0)}s: {pending} runs yet (waiting for 5 quiet minutes)")
        advance(t, 5 * MINUTE)
        quiet = sorted(await runs(2), key=lambda r: r.output)
        for run in quiet:
            print(f"+{seconds_after(run.created_at, t0)}s: indexed {run.output!r}")

        # doc-3: an edit every 4 minutes, never 5 quiet minutes: the 30-minute cap fires
        t1 = clock.now()
        for n in range(8):  # edits at +0, +4, ... +28 minutes
            advance(t, to=t1 + n * 4 * MINUTE)
            await edit("doc-3", f"v{n}")
        advance(t, to=t1 + 30 * MINUTE)  # 2 minutes after the last edit: not quiet for 5 yet
        capped = (await runs(3))[-1]
        after = seconds_after(capped.created_at, t1) // MINUTE
        print(f"doc-3 edited every 4 min: indexed {capped.output!r} {after} min after the first")
    return {
        "quiet": [r.output for r in quiet],
        "capped": capped.output,
        "capped_after_minutes": after,
    }


async def _has_runs(t: TestEngine, count: int) -> bool:
    return len(await t.runs(function_id="index-document")) >= count


def main() -> dict[str, Any]:
    """Run the demo and print what happened; returns the facts it printed."""
    return asyncio.run(demo())


if __name__ == "__main__":
    main()
