// A tiny Inngest app on the official JS SDK, served by a plain Node HTTP server, written once
// for both majors: 4.x (npm "inngest", triggers in the options) and 3.x (npm alias "inngest3",
// createFunction(options, trigger, handler) as the guide writes it).
// Stepline's protocol tests start it, sign requests to it and drive its functions.
// Environment: PORT, INNGEST_MAJOR ("3" or "4"), APP_ID, INNGEST_MODE ("cloud" or "dev"),
// SIGNING_KEY, SIGNING_KEY_FALLBACK, BASE_URL (where the SDK registers and sends events).
import http from "node:http";

const major = process.env.INNGEST_MAJOR === "3" ? 3 : 4;
const sdk = major === 3 ? "inngest3" : "inngest";
const { Inngest, NonRetriableError, RetryAfterError } = await import(sdk);
const { serve } = await import(`${sdk}/node`);

const cloud = process.env.INNGEST_MODE === "cloud";
const inngest = new Inngest({
  id: process.env.APP_ID,
  isDev: !cloud,
  signingKey: process.env.SIGNING_KEY || undefined,
  signingKeyFallback: process.env.SIGNING_KEY_FALLBACK || undefined,
  eventKey: "test-event-key",
  baseUrl: process.env.BASE_URL,
});

// createFunction in the form of the major in use
const create = (options, triggers, handler) =>
  major === 3
    ? inngest.createFunction(options, triggers.length === 1 ? triggers[0] : triggers, handler)
    : inngest.createFunction({ ...options, triggers }, handler);

const child = create(
  { id: "child" },
  major === 3 ? [{ event: "test/child" }] : [], // 4.x: invoke-only functions have no trigger
  async ({ event }) => ({ doubled: event.data.n * 2 }),
);

const steps = create(
  { id: "steps" },
  [{ event: "test/steps" }],
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

const failing = create(
  { id: "failing", retries: 2 },
  [{ event: "test/fail" }],
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
const flow = create(
  {
    id: "flow",
    name: "Flow control",
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
  [{ event: "test/flow", if: "event.data.ok == true" }, { cron: "TZ=Europe/Paris 0 12 * * 5" }],
  async () => "ok",
);

const batch = create(
  {
    id: "batch",
    batchEvents: { maxSize: 50, timeout: "10s", key: "event.data.user", if: "event.data.keep" },
  },
  [{ event: "test/batch" }],
  async ({ events }) => events.length,
);

const port = Number(process.env.PORT);
http
  .createServer(serve({ client: inngest, functions: [child, steps, failing, flow, batch] }))
  .listen(port, "127.0.0.1", () => {
    console.log(`listening on ${port}`);
  });
