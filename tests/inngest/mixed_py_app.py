"""An Inngest app on the official Python SDK configured as apps in the wild are for Inngest's dev
server: only ``INNGEST_DEV=1`` and ``INNGEST_BASE_URL`` in the environment (no base URL, key or
mode in the code). Its functions pass events to and invoke the JS app (``js/mixed_app.js``) and
a native Stepline app (``mixed_native.py``). Environment: PORT, APP_ID (default ``py-mixed``),
JS_APP_ID (default ``js-mixed``), NATIVE_APP_ID (default ``mixed``).

* ``greet`` (``mixed/start``): a step, invokes the JS ``double``, sends ``mixed/js``.
* ``square`` (invoke only, by the JS ``relay``).
* ``fail`` (``mixed/fail``, no retries): raises ``RuntimeError("py went wrong")``.
* ``on-native`` (``mixed/from-native``, sent by the native ``finish``): invokes the native
  ``triple`` by its Inngest id (``<native app>-triple``).
"""

from __future__ import annotations

import os

import fastapi
import inngest
import inngest.fast_api
import uvicorn

JS_APP = os.environ.get("JS_APP_ID", "js-mixed")
NATIVE_APP = os.environ.get("NATIVE_APP_ID", "mixed")
client = inngest.Inngest(app_id=os.environ.get("APP_ID", "py-mixed"))


@client.create_function(fn_id="greet", trigger=inngest.TriggerEvent(event="mixed/start"))
async def greet(ctx: inngest.Context) -> dict[str, object]:
    name = str(ctx.event.data["name"])
    n = ctx.event.data["n"]

    async def shout() -> str:
        return name.upper()

    shouted = await ctx.step.run("shout", shout)
    doubled = await ctx.step.invoke_by_id(
        "double", app_id=JS_APP, function_id="double", data={"n": n}
    )
    await ctx.step.send_event(
        "to-js",
        inngest.Event(name="mixed/js", data={"n": doubled["doubled"]}),  # type: ignore[index]
    )
    return {"shouted": shouted, "doubled": doubled}


@client.create_function(fn_id="square", trigger=inngest.TriggerEvent(event="mixed/square"))
async def square(ctx: inngest.Context) -> dict[str, int]:
    n = int(ctx.event.data["n"])  # type: ignore[call-overload]
    return {"squared": n * n}


@client.create_function(fn_id="on-native", trigger=inngest.TriggerEvent(event="mixed/from-native"))
async def on_native(ctx: inngest.Context) -> dict[str, object]:
    tripled = await ctx.step.invoke_by_id(
        "triple", app_id=NATIVE_APP, function_id="triple", data={"n": ctx.event.data["n"]}
    )
    return {"tripled": tripled}


@client.create_function(fn_id="fail", trigger=inngest.TriggerEvent(event="mixed/fail"), retries=0)
async def fail(ctx: inngest.Context) -> None:
    raise RuntimeError("py went wrong")


app = fastapi.FastAPI()
inngest.fast_api.serve(app, client, [greet, square, fail, on_native])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
