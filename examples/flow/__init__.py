"""Flow control and cancellation, one runnable demo per option.

Each module defines ``app`` (an ``App`` with no database argument, like the other examples) and
a ``main()`` that runs a short demo on a temporary SQLite file with virtual time
(``stepline.testing.TestEngine`` and ``MockClock``) and prints what happened. Run one with
``python -m examples.flow.<module>``; serve one with ``stepline dev examples.flow.<module>:app``.
The how-to pages are in ``docs/flow-control/``; ``tests/acceptance/test_flow_examples.py``
runs every demo and checks its claims.

==================  ==========================================================================
module              option
==================  ==========================================================================
``concurrency``     ``concurrency=`` with a key and a function-wide limit; sleeping runs
``throttle``        ``Throttle``: runs delayed (GCRA), never dropped, per key
``rate_limit``      ``RateLimit``: runs over the limit skipped and recorded
``debounce``        ``Debounce``: one run with the last event, capped by ``timeout``
``batching``        ``BatchEvents``: one run for several events in ``ctx.events``
``priority``        ``Priority``: queue order from an expression
``singleton``       ``Singleton``: ``mode="skip"`` and ``mode="cancel"``
``idempotency``     ``idempotency="expr"`` and event ``id`` de-duplication
``cron``            ``TriggerCron`` with a timezone, mixed with an event trigger
``cancellation``    ``cancel_on``, ``timeouts``, cancel/bulk cancel, replay, pause/resume
==================  ==========================================================================
"""
