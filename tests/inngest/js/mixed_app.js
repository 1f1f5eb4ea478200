// An Inngest app on the official JS SDK (4.x) configured as apps in the wild are for Inngest's
// dev server: only INNGEST_DEV=1 and INNGEST_BASE_URL in the environment. Its functions pass
// events to and invoke the Python app (../mixed_py_app.py) and a native Stepline app.
// Environment: PORT, APP_ID (default "js-mixed"), PY_APP_ID (default "py-mixed").
//   double (invoke only): {doubled: n * 2}
//   relay (mixed/js): a step, invokes the Python "square", sends mixed/native
//   fail (mixed/fail, no retries): throws Error("js went wrong")
//   versions (mixed/versioned): the v of its event, of the event its wait got and of the
//     event "version" (invoke only: {v: its event's v}) was invoked with (v "invoked.1")
import http from "node:http";
import { Inngest, referenceFunction } from "inngest";
import { serve } from "inngest/node";

const inngest = new Inngest({ id: process.env.APP_ID || "js-mixed" });
const pyApp = process.env.PY_APP_ID || "py-mixed";

const double = inngest.createFunction(
  { id: "double", triggers: [] },
  async ({ event }) => ({ doubled: event.data.n * 2 }),
);

const relay = inngest.createFunction(
  { id: "relay", triggers: [{ event: "mixed/js" }] },
  async ({ event, step }) => {
    const n = await step.run("plus-one", () => event.data.n + 1);
    const squared = await step.invoke("square", {
      function: referenceFunction({ appId: pyApp, functionId: "square" }),
      data: { n },
    });
    await step.sendEvent("to-native", { name: "mixed/native", data: { n: squared.squared } });
    return { n, squared };
  },
);

const fail = inngest.createFunction(
  { id: "fail", retries: 0, triggers: [{ event: "mixed/fail" }] },
  async () => {
    throw new Error("js went wrong");
  },
);

const version = inngest.createFunction(
  { id: "version", triggers: [] },
  async ({ event }) => ({ v: event.v ?? null }),
);

const versions = inngest.createFunction(
  { id: "versions", triggers: [{ event: "mixed/versioned" }] },
  async ({ event, events, step }) => {
    const invoked = await step.invoke("invoke", { function: version, data: {}, v: "invoked.1" });
    const got = await step.waitForEvent("wait", {
      event: "mixed/versioned.go",
      timeout: "1m",
      if: "async.data.n == event.data.n",
    });
    return {
      v: event.v ?? null,
      vs: events.map((e) => e.v ?? null),
      invoked: invoked.v,
      waited: got ? (got.v ?? null) : "timed out",
    };
  },
);

http
  .createServer(
    serve({ client: inngest, functions: [double, relay, fail, version, versions] }),
  )
  .listen(Number(process.env.PORT), "127.0.0.1", () => {
    console.log(`listening on ${process.env.PORT}`);
  });
