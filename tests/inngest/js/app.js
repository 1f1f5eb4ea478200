// A tiny Inngest app on the official JS SDK (4.x), served by a plain Node HTTP server.
// Stepline's protocol tests start it, sign requests to it and drive its functions.
// Environment: PORT, INNGEST_MODE ("cloud" or "dev"), SIGNING_KEY, SIGNING_KEY_FALLBACK,
// BASE_URL (where the SDK registers and sends events).
import http from "node:http";
import { Inngest, NonRetriableError, RetryAfterError } from "inngest";
import { serve } from "inngest/node";

const cloud = process.env.INNGEST_MODE === "cloud";
const inngest = new Inngest({
  id: "js-app",
  isDev: !cloud,
  signingKey: process.env.SIGNING_KEY || undefined,
  signingKeyFallback: process.env.SIGNING_KEY_FALLBACK || undefined,
  eventKey: "test-event-key",
  baseUrl: process.env.BASE_URL,
});

const child = inngest.createFunction(
  { id: "child", triggers: [] },
  async ({ event }) => ({ doubled: event.data.n * 2 }),
);

const steps = inngest.createFunction(
  { id: "steps", triggers: [{ event: "test/steps" }] },
  async ({ event, step }) => {
    const a = await step.run("a", () => ({ n: event.data.n + 1 }));
    await step.sleep("nap", "2s");
    const got = await step.waitForEvent("wait", {
      event: "test/go",
      timeout: "1h",
      if: "async.data.n == event.data.n",
    });
    const [p1, p2] = await Promise.all([
      step.run("p1", () => a.n * 10),
      step.run("p2", () => a.n * 100),
    ]);
    const called = await step.invoke("call", { function: child, data: { n: p1 } });
    await step.sendEvent("announce", { name: "test/done", data: { p2 } });
    return { a, waited: got ? got.data : null, p1, p2, called };
  },
);

const failing = inngest.createFunction(
  { id: "failing", triggers: [{ event: "test/fail" }], retries: 2 },
  async ({ event, step }) => {
    if (event.data.how === "step") {
      await step.run("boom", () => {
        throw new Error("step went wrong");
      });
    }
    if (event.data.how === "retry-after") {
      throw new RetryAfterError("come back later", 30000);
    }
    if (event.data.how === "non-retriable") {
      throw new NonRetriableError("never again");
    }
    throw new Error("function went wrong");
  },
);

// Every flow-control field of the function config, each in a form Stepline honours.
const flow = inngest.createFunction(
  {
    id: "flow",
    name: "Flow control",
    triggers: [
      { event: "test/flow", if: "event.data.ok == true" },
      { cron: "TZ=Europe/Paris 0 12 * * 5" },
    ],
    concurrency: [
      { limit: 2, key: "event.data.account" },
      { limit: 5 },
    ],
    throttle: { limit: 3, period: "1m", burst: 2, key: "event.data.account" },
    rateLimit: { limit: 10, period: "1h", key: "event.data.user" },
    debounce: { period: "5s", key: "event.data.user", timeout: "1m" },
    priority: { run: "event.data.vip ? 60 : 0" },
    singleton: { key: "event.data.user", mode: "cancel" },
    idempotency: "event.data.order",
    cancelOn: [
      { event: "test/cancel", match: "data.user" },
      { event: "test/stop", if: "async.data.id == event.data.id", timeout: "1d" },
    ],
    timeouts: { start: "30s", finish: "1h" },
    retries: 7,
    onFailure: async ({ error }) => ({ handled: error.message }),
  },
  async () => "ok",
);

const batch = inngest.createFunction(
  {
    id: "batch",
    triggers: [{ event: "test/batch" }],
    batchEvents: { maxSize: 50, timeout: "10s", key: "event.data.user", if: "event.data.keep" },
  },
  async ({ events }) => events.length,
);

const port = Number(process.env.PORT);
http
  .createServer(serve({ client: inngest, functions: [child, steps, failing, flow, batch] }))
  .listen(port, "127.0.0.1", () => {
    console.log(`listening on ${port}`);
  });
