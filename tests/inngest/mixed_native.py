"""The native Stepline half of the mixed-app tests: ``stepline dev mixed_native:app -u <Python
SDK app> -u <JS SDK app>`` serves it beside the SDK apps of ``mixed_py_app.py`` and
``js/mixed_app.js``.

* ``finish`` (``mixed/native``, sent by the JS ``relay``): invokes the JS ``double`` by its
  slug, then sends ``mixed/from-native`` (to the Python ``on-native``).
* ``triple`` (invoke only; the Python ``on-native`` invokes it as ``mixed-triple``).
"""

from __future__ import annotations

from typing import Any

from stepline import App, Context, Event, TriggerEvent

app = App("mixed")


@app.function(id="finish", trigger=TriggerEvent("mixed/native"))
async def finish(ctx: Context) -> dict[str, Any]:
    doubled = await ctx.step.invoke("double", function="js-mixed-double", data=dict(ctx.event.data))
    await ctx.step.send_event("to-python", Event("mixed/from-native", {"n": doubled["doubled"]}))
    return {"doubled": doubled}


@app.function(id="triple")
async def triple(ctx: Context) -> dict[str, int]:
    return {"tripled": int(ctx.event.data["n"]) * 3}
