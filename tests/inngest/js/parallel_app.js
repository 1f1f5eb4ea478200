// An Inngest app on the official JS SDK (4.x "inngest" or 3.x alias "inngest3") for the
// driver's tests (parallel steps, retries, large payloads, limits): each function counts the requests its handler is called with
// and the step bodies it runs (per run), served at GET /state/<run id>, and how many requests it
// is handling (GET /busy).
// Environment as app.js: PORT, INNGEST_MAJOR, APP_ID, INNGEST_MODE, SIGNING_KEY, BASE_URL.
import http from "node:http";

const major = process.env.INNGEST_MAJOR === "3" ? 3 : 4;
const sdk = major === 3 ? "inngest3" : "inngest";
const { Inngest } = await import(sdk);
const { serve } = await import(`${sdk}/node`);

const cloud = process.env.INNGEST_MODE === "cloud";
const inngest = new Inngest({
  id: process.env.APP_ID,
  isDev: !cloud,
  signingKey: process.env.SIGNING_KEY || undefined,
  eventKey: "test-event-key",
  baseUrl: process.env.BASE_URL,
});

const create = (options, triggers, handler) =>
  major === 3
    ? inngest.createFunction(options, triggers.length === 1 ? triggers[0] : triggers, handler)
    : inngest.createFunction({ ...options, triggers }, handler);

const requests = new Map(); // run id -> requests its handler was called for
const ran = new Map(); // run id -> step bodies run, in order
const a2Done = new Map(); // run id -> [promise, resolve]

const count = (runId) => requests.set(runId, (requests.get(runId) ?? 0) + 1);
const record = (runId, name) => {
  if (!ran.has(runId)) ran.set(runId, []);
  ran.get(runId).push(name);
  return ran.get(runId).filter((n) => n === name).length;
};
const gate = (runId) => {
  if (!a2Done.has(runId)) {
    let resolve;
    const promise = new Promise((r) => {
      resolve = r;
    });
    a2Done.set(runId, [promise, resolve]);
  }
  return a2Done.get(runId);
};

const retryParallel = create(
  { id: "retry-parallel", retries: 2 },
  [{ event: "par/retry" }],
  async ({ step, runId }) => {
    count(runId);
    const [flaky, released] = await Promise.all([
      step.run("flaky", () => {
        if (record(runId, "flaky") === 1) throw new Error("the first attempt fails");
        return "ok";
      }),
      step.waitForEvent("release", { event: "par/release", timeout: "1h" }),
    ]);
    return { flaky, released: released !== null };
  },
);

const groups = (step, runId, race) => {
  const body = (name) => async () => {
    if (race && name === "b.1") await gate(runId)[0]; // b.1 ends only once a.2 has run
    record(runId, name);
    if (name === "a.2") gate(runId)[1]();
    return name;
  };
  const fast = async () => [await step.run("a.1", body("a.1")), await step.run("a.2", body("a.2"))];
  const slow = async () => [await step.run("b.1", body("b.1")), await step.run("b.2", body("b.2"))];
  return Promise.all([fast(), slow()]);
};

const parallelWait = create(
  { id: "parallel-wait", retries: 0 },
  [{ event: "par/wait" }],
  async ({ step, runId }) => {
    count(runId);
    return groups(step, runId, false);
  },
);

const parallelRace = create(
  { id: "parallel-race", retries: 0 },
  [{ event: "par/race" }],
  async ({ step, group, runId }) => {
    count(runId);
    return group.parallel({ mode: "race" }, () => groups(step, runId, true));
  },
);

// the same group in race mode as a chain of two steps, the first failing once, next to a wait:
// the chain goes on after the retry although the wait is still pending
const raceRetry = create(
  { id: "race-retry", retries: 2 },
  [{ event: "par/race-retry" }],
  async ({ step, group, runId }) => {
    count(runId);
    return group.parallel({ mode: "race" }, async () => {
      const [chain, released] = await Promise.all([
        (async () => [
          await step.run("flaky", () => {
            if (record(runId, "flaky") === 1) throw new Error("the first attempt fails");
            return "ok";
          }),
          await step.run("after", () => record(runId, "after") && "after"),
        ])(),
        step.waitForEvent("release", { event: "par/race-release", timeout: "1h" }),
      ]);
      return { chain, released: released !== null };
    });
  },
);

// a race-mode group with a wait "gate", then a wait-mode group with another wait "gate" (its own
// step id, the same name) next to a wait "other"
const raceSameName = create(
  { id: "race-same-name", retries: 0 },
  [{ event: "par/same" }],
  async ({ step, group, runId }) => {
    count(runId);
    await group.parallel({ mode: "race" }, () =>
      Promise.all([
        step.waitForEvent("gate", { event: "par/same-1", timeout: "1h" }),
        step.run("a", () => record(runId, "a") && "a"),
      ]),
    );
    const second = await Promise.all([
      step.waitForEvent("gate", { event: "par/same-2", timeout: "1h" }),
      step.waitForEvent("other", { event: "par/same-3", timeout: "1h" }),
    ]);
    return { second: second.map((e) => e !== null) };
  },
);

// three steps next to a wait in one group (a pass cut by the request limit leaves planned steps
// unsent), in wait or race mode
const stepsNextToAWait = (step, runId) =>
  Promise.all([
    ...["p1", "p2", "p3"].map((name) => step.run(name, () => record(runId, name) && name)),
    step
      .waitForEvent("hold", { event: "par/planned-release", timeout: "1h" })
      .then((e) => e !== null),
  ]);
const plannedWait = create(
  { id: "planned-wait", retries: 0 },
  [{ event: "par/planned-wait" }],
  async ({ step, runId }) => {
    count(runId);
    return stepsNextToAWait(step, runId);
  },
);
const plannedRace = create(
  { id: "planned-race", retries: 0 },
  [{ event: "par/planned-race" }],
  async ({ step, group, runId }) => {
    count(runId);
    return group.parallel({ mode: "race" }, () => stepsNextToAWait(step, runId));
  },
);

const doubler = create(
  { id: "doubler" },
  major === 3 ? [{ event: "par/double" }] : [],
  async ({ event }) => event.data.n * 2,
);

const parallelMixed = create(
  { id: "parallel-mixed", retries: 0 },
  [{ event: "par/mixed" }],
  async ({ step, runId }) => {
    count(runId);
    const body = (name) => () => {
      record(runId, name);
      return name;
    };
    const [called, r1, r2] = await Promise.all([
      step.invoke("call", { function: doubler, data: { n: 21 } }),
      step.run("1a", body("1a")),
      step.run("1b", body("1b")),
      step.sendEvent("send", { name: "par/noop", data: {} }),
    ]);
    const after = await step.run("after", body("after"));
    return { called, runs: [r1, r2], after };
  },
);

// n steps (default 10) of size bytes (default 1 MiB): past 4 MiB the SDK fetches the memo
const bigSteps = create(
  { id: "big-steps", retries: 0 },
  [{ event: "big/steps" }],
  async ({ event, step, runId }) => {
    count(runId);
    const n = event.data.n ?? 10;
    const size = event.data.size ?? 1 << 20;
    let total = 0;
    for (let i = 0; i < n; i++) {
      const out = await step.run(`big-${i}`, () => {
        record(runId, `big-${i}`);
        return String(i % 10).repeat(size);
      });
      if (out !== String(i % 10).repeat(size)) throw new Error(`step big-${i} came back wrong`);
      total += out.length;
    }
    return { steps: n, bytes: total };
  },
);

// a batch of 10 large events: past 4 MiB the SDK fetches the batch
const bigBatch = create(
  { id: "big-batch", retries: 0, batchEvents: { maxSize: 10, timeout: "1m" } },
  [{ event: "big/batch" }],
  async ({ events, runId }) => {
    count(runId);
    return { events: events.length, bytes: events.reduce((n, e) => n + e.data.blob.length, 0) };
  },
);

// step.ai.infer against the model at event.data.url (format "openai" or "anthropic")
const aiAsk = create(
  { id: "ai-ask", retries: 1 },
  [{ event: "ai/ask" }],
  async ({ event, step, runId }) => {
    count(runId);
    const { models } = step.ai;
    const model =
      event.data.format === "anthropic"
        ? models.anthropic({
            model: "claude-test",
            apiKey: "sk-ant-test",
            baseUrl: event.data.url,
            defaultParameters: { max_tokens: 16 },
          })
        : models.openai({ model: "gpt-test", apiKey: "sk-test", baseUrl: event.data.url });
    let answer;
    try {
      answer = await step.ai.infer("ask", {
        model,
        body: { messages: [{ role: "user", content: "hi" }] },
      });
    } catch (err) {
      return { failed: err.name, message: err.message };
    }
    await step.run("after", () => record(runId, "after") && "after");
    return { answer };
  },
);

// five sequential steps (a sleep after the second when event.data.nap)
const sequence = create(
  { id: "sequence", retries: 0 },
  [{ event: "seq/run" }],
  async ({ event, step, runId }) => {
    count(runId);
    const out = [];
    for (let i = 1; i <= 5; i++) {
      out.push(await step.run(`s${i}`, () => record(runId, `s${i}`) && i * 10));
      if (i === 2 && event.data.nap) await step.sleep("nap", "1s");
    }
    return out;
  },
);

const functions = [
  sequence,
  aiAsk,
  retryParallel,
  parallelWait,
  doubler,
  parallelMixed,
  bigSteps,
  bigBatch,
  plannedWait,
];
if (major === 4) functions.push(parallelRace, raceRetry, raceSameName, plannedRace);
const handler = serve({ client: inngest, functions });
const port = Number(process.env.PORT);
let busy = 0; // requests to the Inngest endpoint being handled (GET /busy)
http
  .createServer((req, res) => {
    if (req.url.startsWith("/state/")) {
      const runId = req.url.slice("/state/".length);
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ requests: requests.get(runId) ?? 0, ran: ran.get(runId) ?? [] }));
      return;
    }
    if (req.url === "/busy") {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ busy }));
      return;
    }
    // counted until the SDK has handled it to its end (a client that went away or not)
    busy += 1;
    Promise.resolve(handler(req, res)).finally(() => {
      busy -= 1;
    });
  })
  .listen(port, "127.0.0.1", () => {
    console.log(`listening on ${port}`);
  });
