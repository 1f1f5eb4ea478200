"""Two apps on one database for the cross-app event tests: ``billing`` sends, ``emails``
receives (events are environment-wide, as in Inngest).

- billing's ``charge`` (``order/placed``): the sender's own function, planned by the sender.
- emails' ``receipt`` (``order/placed``): the same event, another app's function.
- emails' ``welcome`` (``user/signup``, ``if_`` the plan is "pro", ``idempotency`` per user):
  the receiving app applies its own filter and flow control.

Run as a script (``python cross_app.py worker``): serves emails' worker on ``XAPP_DB`` (a SQLite
file or a PostgreSQL URL) as ``XAPP_WORKER_ID`` until SIGTERM; every receipt run appends
``run_id pid`` to ``XAPP_DIR/receipts.log`` from its step.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from stepline import App, Context, TriggerEvent


def billing(db: str | None = None) -> App:
    app = App("billing", db=db)

    @app.function(id="charge", trigger=TriggerEvent("order/placed"))
    async def charge(ctx: Context) -> Any:
        return {"charged": ctx.event.data["order"]}

    return app


def emails(db: str | None = None) -> App:
    app = App("emails", db=db)

    @app.function(id="receipt", trigger=TriggerEvent("order/placed"))
    async def receipt(ctx: Context) -> Any:
        def record() -> int:
            log = os.environ.get("XAPP_DIR")
            if log:
                with (Path(log) / "receipts.log").open("a") as f:
                    f.write(f"{ctx.run_id} {os.getpid()}\n")
            return os.getpid()

        pid = await ctx.step.run("send", record)
        return {"order": ctx.event.data["order"], "by": pid}

    @app.function(
        id="welcome",
        trigger=TriggerEvent("user/signup", if_="event.data.plan == 'pro'"),
        idempotency="event.data.user",
    )
    async def welcome(ctx: Context) -> Any:
        return await ctx.step.run("mail", lambda: {"welcomed": ctx.event.data["user"]})

    return app


billing_app = billing()  # for `stepline send --app cross_app:billing_app --db ...`

if __name__ == "__main__":
    assert sys.argv[1:] == ["worker"], sys.argv
    db = os.environ["XAPP_DB"]
    emails(db).run_worker(worker_id=os.environ["XAPP_WORKER_ID"], poll_interval=0.05)
