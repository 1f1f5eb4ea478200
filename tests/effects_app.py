"""An app whose runs wait for a payment and are cancelled by a cancellation: what the tests of
the runs each event started, resumed and cancelled (issue 9) drive, on the CLI and the REST API."""

from __future__ import annotations

from stepline import App, CancelOn, Context, TriggerEvent


def payment_app(name: str) -> App:
    """``await-payment`` runs on ``order/created``: resumed by ``payment/received``, cancelled
    by ``order/cancelled`` (both matched on ``data.orderId``); outputs whether it was paid."""
    app = App(name)

    @app.function(
        id="await-payment",
        trigger=TriggerEvent("order/created"),
        cancel_on=[CancelOn("order/cancelled", match="data.orderId")],
    )
    async def await_payment(ctx: Context) -> bool:
        paid = await ctx.step.wait_for_event(
            "paid", event="payment/received", timeout="1d", match="data.orderId"
        )
        return paid is not None

    return app
