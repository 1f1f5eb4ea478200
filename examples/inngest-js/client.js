// The Inngest client of the example app, on either major of the official SDK.
//
// functions.js is written as the guide writes it, in the 3.x form
// `inngest.createFunction(options, trigger, handler)`. The 4.x SDK (the current major) takes the
// triggers inside the options instead, `inngest.createFunction({ id, triggers: [...] }, handler)`,
// and checkpoints steps asynchronously by default (many steps per request).
//
// INNGEST_SDK_MAJOR=3 runs the functions on inngest@3 (installed as the npm alias "inngest3");
// anything else runs them on inngest@4, whose createFunction is called in its own form below.
const major = process.env.INNGEST_SDK_MAJOR === "3" ? 3 : 4;
const sdk = await import(major === 3 ? "inngest3" : "inngest");

export const { NonRetriableError, RetryAfterError } = sdk;
export const { serve } = await import(major === 3 ? "inngest3/node" : "inngest/node");

// The guide passes a winston logger; any object with info/warn/error/debug will do.
const line =
  (level) =>
  (message, fields = {}) =>
    console.log(JSON.stringify({ level, message, ...fields }));
const logger = { info: line("info"), warn: line("warn"), error: line("error"), debug: () => {} };

// INNGEST_DEV=1 and INNGEST_BASE_URL (e.g. http://127.0.0.1:8288, where `stepline dev` listens)
// in the environment point the SDK at a dev server.
export const client = new sdk.Inngest({ id: "my-app", logger });

// What functions.js calls `inngest`: the client itself on 3.x; on 4.x, the same calls with the
// trigger(s) moved into the options.
export const inngest =
  major === 3
    ? client
    : {
        createFunction: (options, trigger, handler) =>
          client.createFunction({ ...options, triggers: [trigger].flat() }, handler),
        send: (payload) => client.send(payload),
      };
