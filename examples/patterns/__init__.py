"""Every pattern of the Inngest durable-functions guide, ported to Stepline.

One module per pattern; each defines ``app`` (an ``App`` with no database argument, so it uses
``STEPLINE_DB`` or ``./.stepline/stepline.db``, and tests attach their own store). Run one with
``stepline dev examples.patterns.<module>:app``. ``tests/acceptance/test_examples.py`` runs them
all and checks what each one claims.

==========================  ===============================================================
module                      pattern
==========================  ===============================================================
``determinism``             non-deterministic code (a timestamp) inside a step
``step_ids``                step ids reused (``fetch-data`` twice) and descriptive ids
``basic_function``          a function with an id, a trigger and ``retries``
``event_filter``            an event trigger with an ``if_`` filter
``multiple_triggers``       several event triggers on one function
``invoke``                  ``step.invoke`` another function and use its result
``event_idempotency``       producer-side de-duplication with the event ``id`` (24 h)
``retries``                 default retries, ``retries=10`` with ``ctx.attempt``
``non_retriable``           ``NonRetriableError`` (user not found)
``retry_after``             ``RetryAfterError`` (HTTP 429 with ``retry-after``)
``logging_practices``       ``ctx.logger`` inside and outside steps (replay-aware)
``conditional_steps``       steps that run only for some runs (premium users)
``error_recovery``          ``except StepError`` → a fallback step
``sleep``                   ``step.sleep`` and ``step.sleep_until``
``wait_for_event``          ``step.wait_for_event`` with ``match=``/``if_=`` and a timeout
``fan_out``                 ``step.send_event`` to start one run per item
``parallel_steps``          ``step.parallel`` and ``asyncio.gather``
==========================  ===============================================================

Flow control, cancellation and cron have their own demos in ``examples/flow/`` (one per page
of ``docs/flow-control/``). ``checkpointing`` shows grouped commits (``Checkpointing``).
"""
