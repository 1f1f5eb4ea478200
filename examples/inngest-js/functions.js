// Every pattern of the Inngest durable-functions guide (../../docs/inngest.md links it), written
// as the guide writes it: `inngest.createFunction(options, trigger, handler)`, the 3.x form
// (client.js runs the same functions on 4.x). Then the step and flow-control patterns the guide
// points to (step.sleep, step.waitForEvent, step.sendEvent, parallel steps, throttle, rateLimit,
// debounce, batchEvents, priority, singleton, onFailure, concurrency keys) in the same style.
// The services the steps call are stand-ins that record their calls (services.js).
import { inngest, NonRetriableError, RetryAfterError } from "./client.js";
import {
  answerTicket,
  buildReport,
  callBackupService,
  callCriticalService,
  callPrimaryService,
  callSecondaryService,
  chargeCard,
  chargeCustomer,
  cleanupOrderResources,
  db,
  doJob,
  externalAPI,
  fetchOrderData,
  fetchProfile,
  fetchUserData,
  fileInvoice,
  getUserData,
  importRows,
  indexDocument,
  loadNewUsers,
  notifyBilling,
  process1,
  process2,
  processData,
  processPayment,
  processPremiumFeatures,
  processReport,
  processStandardFeatures,
  recordUserAction,
  rewardPurchase,
  runLongProcess,
  sendEmail,
  sendReminder,
  sendSms,
  sendTimedReport,
  startOnboarding,
  syncAccount,
  syncContacts,
  syncInbox,
  updateUser,
  validatePayment,
  welcomeUser,
} from "./services.js";

// ---- Step execution flow: all non-deterministic logic in steps --------------------------------

const processWithTimestamp = inngest.createFunction(
  { id: "process-with-timestamp" },
  { event: "data/received" },
  async ({ event, step }) => {
    const result = await step.run("process-with-timestamp", () => {
      const timestamp = Date.now(); // Only runs once
      return processData(event.data, timestamp);
    });
    return result;
  },
);

// ---- Basic function structure + event-based cancellation (both are "process-order") ------------

const processOrder = inngest.createFunction(
  {
    id: "process-order", // Unique, never change this
    retries: 4, // Default: 4 retries per step
    concurrency: 10, // Max concurrent executions
    cancelOn: [
      {
        event: "order/cancelled",
        if: "event.data.orderId == async.data.orderId",
      },
    ],
  },
  { event: "order/created" }, // Trigger
  async ({ event, step }) => {
    await step.sleepUntil("wait-for-payment", event.data.paymentDue);
    // Will be cancelled if order/cancelled event received
    return await step.run("charge-payment", () => processPayment(event.data));
  },
);

// ---- Step IDs and memoization -------------------------------------------------------------------

const completePurchase = inngest.createFunction(
  { id: "complete-purchase" },
  { event: "purchase/submitted" },
  async ({ event, step }) => {
    // Step IDs can be reused - Inngest handles counters automatically
    const data = await step.run("fetch-data", () => fetchUserData(event.data.userId));
    const more = await step.run("fetch-data", () => fetchOrderData(event.data.userId)); // Different execution

    // Use descriptive IDs for clarity
    await step.run("validate-payment", () => validatePayment(event.data.paymentId));
    await step.run("charge-customer", () => chargeCustomer(event.data));
    await step.run("send-confirmation", () => sendEmail(event.data.email));
    return { data, more };
  },
);

// ---- Triggers and events ------------------------------------------------------------------------

// Single event trigger
const welcomeNewUser = inngest.createFunction(
  { id: "welcome-new-user" },
  { event: "user/signup" },
  async ({ event, step }) => {
    await step.run("welcome", () => welcomeUser(event.data.userId));
  },
);

// Event with conditional filter
const rewardBigPurchase = inngest.createFunction(
  { id: "reward-big-purchase" },
  {
    event: "user/action",
    if: 'event.data.action == "purchase" && event.data.amount > 100',
  },
  async ({ event, step }) => {
    await step.run("reward", () => rewardPurchase(event.data.userId, event.data.amount));
  },
);

// Multiple triggers (up to 10)
const onboardUser = inngest.createFunction(
  { id: "onboard-user" },
  [
    { event: "user/signup" },
    { event: "user/login", if: "event.data.firstLogin == true" },
    { cron: "0 9 * * *" }, // Daily at 9 AM
  ],
  async ({ event, step }) => {
    await step.run("start-onboarding", () => startOnboarding(event.name, event.data?.userId));
  },
);

// Cron triggers: basic, and with a timezone
const refreshEverySixHours = inngest.createFunction(
  { id: "refresh-every-six-hours" },
  { cron: "0 */6 * * *" }, // Every 6 hours
  async ({ step }) => {
    await step.run("send-timed-report", () => sendTimedReport("6h"));
  },
);

const fridayNoonParis = inngest.createFunction(
  { id: "friday-noon-paris" },
  { cron: "TZ=Europe/Paris 0 12 * * 5" }, // Fridays at noon Paris time
  async ({ step }) => {
    await step.run("send-timed-report", () => sendTimedReport("friday"));
  },
);

// ---- Function invocation ------------------------------------------------------------------------

const generateReportFunction = inngest.createFunction(
  { id: "generate-report" },
  { event: "report/generate" },
  async ({ event, step }) => {
    return await step.run("build-report", () => buildReport(event.data.userId));
  },
);

// Combine with events: on request, and weekly on Sunday
const weeklyReport = inngest.createFunction(
  { id: "weekly-report" },
  [{ event: "manual/report.requested" }, { cron: "0 0 * * 0" }],
  async ({ event, step }) => {
    // Invoke another function as a step
    const result = await step.invoke("generate-report", {
      function: generateReportFunction,
      data: { userId: event.data?.userId ?? "everyone" },
    });

    // Use returned data
    return await step.run("process-report", () => {
      return processReport(result);
    });
  },
);

// ---- Idempotency ---------------------------------------------------------------------------------

// Event-level idempotency (producer side): the server's POST /checkout/{cartId} calls this
export async function completeCheckout(cartId) {
  // Prevent duplicate events with custom ID
  await inngest.send({
    id: `checkout-completed-${cartId}`, // 24-hour deduplication
    name: "cart/checkout.completed",
    data: { cartId, email: "user@example.com" },
  });
}

// Function-level idempotency (consumer side)
const sendCheckoutEmail = inngest.createFunction(
  {
    id: "send-checkout-email",
    // Only run once per cartId per 24 hours
    idempotency: "event.data.cartId",
  },
  { event: "cart/checkout.completed" },
  async ({ event, step }) => {
    // This function won't run twice for same cartId
    await step.run("send-email", () => sendEmail(event.data.email, event.data.cartId));
  },
);

// Complex idempotency keys
const processUserAction = inngest.createFunction(
  {
    id: "process-user-action",
    // Unique per user + organization combination
    idempotency: 'event.data.userId + "-" + event.data.organizationId',
  },
  { event: "user/action.performed" },
  async ({ event, step }) => {
    await step.run("record-action", () => recordUserAction(event.data));
  },
);

// ---- Cancellation: timeouts, and cleaning up after a cancellation ---------------------------------

const processWithTimeout = inngest.createFunction(
  {
    id: "process-with-timeout",
    timeouts: {
      start: "5m", // Cancel if not started within 5 minutes
      finish: "30m", // Cancel if not finished within 30 minutes
    },
  },
  { event: "long/process.requested" },
  async ({ event, step }) => {
    await step.run("long-process", () => runLongProcess(event.data.jobId));
  },
);

// Timeouts that fire: a run not finished within 1 s is cancelled (its sleep outlasts that)...
const finishInTime = inngest.createFunction(
  { id: "finish-in-time", timeouts: { finish: "1s" } },
  { event: "job/slow" },
  async ({ event, step }) => {
    await step.sleep("too-long", "1m");
    await step.run("never", () => runLongProcess(event.data.jobId));
  },
);

// ...and a run not started within 1 s (queued behind another one: concurrency 1) is cancelled
const startInTime = inngest.createFunction(
  { id: "start-in-time", concurrency: 1, timeouts: { start: "1s" } },
  { event: "job/queued" },
  async ({ event, step }) => {
    await step.run("work", () => doJob(event.data.jobId));
  },
);

// Listen for cancellation events
const cleanupCancelled = inngest.createFunction(
  { id: "cleanup-cancelled-process" },
  { event: "inngest/function.cancelled" },
  async ({ event, step }) => {
    // function_id is the function's slug, "<app id>-<function id>"
    if (event.data.function_id === "my-app-process-order") {
      await step.run("cleanup-resources", () => {
        return cleanupOrderResources(event.data.run_id);
      });
    }
  },
);

// ---- Error handling and retries ------------------------------------------------------------------

const reliableFunction = inngest.createFunction(
  {
    id: "reliable-function",
    retries: 10, // Up to 10 retries per step
  },
  { event: "critical/task" },
  async ({ event, step, attempt }) => {
    // attempt is the function-level attempt counter (0-indexed)
    // It tracks retries for the currently executing step, not the overall function
    return await step.run("call-service", () => {
      if (attempt > 5) {
        // Different logic for later attempts of the current step
        return callBackupService(event.data, { attempt });
      }
      return callCriticalService(event.data, { attempt });
    });
  },
);

// Non-retriable errors
const processUser = inngest.createFunction(
  { id: "process-user" },
  { event: "user/process.requested" },
  async ({ event, step }) => {
    const user = await step.run("fetch-user", async () => {
      const user = await db.users.findOne(event.data.userId);
      if (!user) {
        // Don't retry - user doesn't exist
        throw new NonRetriableError("User not found, stopping execution");
      }
      return user;
    });

    // Continue processing...
    await step.run("update-user", () => updateUser(user.id));
    return user;
  },
);

// Custom retry timing
const respectRateLimit = inngest.createFunction(
  { id: "api-call" },
  { event: "api/call.requested" },
  async ({ event, step }) => {
    return await step.run("call-api", async () => {
      const response = await externalAPI.call(event.data);
      if (response.status === 429) {
        // Retry after specific time from API
        const retryAfter = response.headers["retry-after"];
        throw new RetryAfterError("Rate limited", `${retryAfter}s`);
      }
      return response.data;
    });
  },
);

// ---- Logging -------------------------------------------------------------------------------------

const processDataFunction = inngest.createFunction(
  { id: "process-data" },
  { event: "data/process.requested" },
  async ({ event, step, logger }) => {
    // ✅ GOOD: Log inside steps to avoid duplicates
    const result = await step.run("fetch-data", async () => {
      logger.info("Fetching data for user", { userId: event.data.userId });
      return await fetchOrderData(event.data.userId);
    });

    await step.run("log-completion", async () => {
      logger.info("Processing complete", { resultCount: result.length });
    });
    return { resultCount: result.length };
  },
);

// ---- Performance: checkpointing -------------------------------------------------------------------

// Enable checkpointing for lower latency
const realTimeFunction = inngest.createFunction(
  {
    id: "real-time-function",
    checkpointing: {
      maxRuntime: "5m", // Max continuous execution time
      bufferedSteps: 2, // Buffer 2 steps before checkpointing
      maxInterval: "10s", // Max wait before checkpoint
    },
  },
  { event: "realtime/process" },
  async ({ event, step }) => {
    // Steps execute immediately with periodic checkpointing
    const result1 = await step.run("step-1", () => process1(event.data));
    const result2 = await step.run("step-2", () => process2(result1));
    return { result2 };
  },
);

// ---- Advanced patterns -----------------------------------------------------------------------------

const conditionalProcess = inngest.createFunction(
  { id: "conditional-process" },
  { event: "process/conditional" },
  async ({ event, step }) => {
    const userData = await step.run("fetch-user", () => {
      return getUserData(event.data.userId);
    });

    // Conditional step execution
    if (userData.isPremium) {
      await step.run("premium-processing", () => {
        return processPremiumFeatures(userData);
      });
    }

    // Always runs
    await step.run("standard-processing", () => {
      return processStandardFeatures(userData);
    });
  },
);

// Error recovery: a step's error reaches the handler once its retries are spent (one here: the
// default four take some 15 s of backoff under `stepline dev`)
const robustProcess = inngest.createFunction(
  { id: "robust-process", retries: 1 },
  { event: "process/robust" },
  async ({ event, step }) => {
    let primaryResult;
    try {
      primaryResult = await step.run("primary-service", () => {
        return callPrimaryService(event.data);
      });
    } catch (error) {
      // Fallback to secondary service
      primaryResult = await step.run("fallback-service", () => {
        return callSecondaryService(event.data);
      });
    }
    return { result: primaryResult };
  },
);

// ---- Beyond the guide's page: the other step tools -------------------------------------------------

// step.waitForEvent with an `if` expression: `event` is the run's event, `async` the awaited one
const approveInvoice = inngest.createFunction(
  { id: "approve-invoice" },
  { event: "invoice/created" },
  async ({ event, step }) => {
    const approval = await step.waitForEvent("wait-for-approval", {
      event: "invoice/approved",
      timeout: "7d",
      if: "async.data.invoiceId == event.data.invoiceId",
    });
    if (!approval) return { approved: false };
    await step.run("file-invoice", () => fileInvoice(event.data.invoiceId, approval.data.by));
    return { approved: true, by: approval.data.by };
  },
);

// step.sleep, then step.waitForEvent with `match` (short for the same `if` on one field); null
// when the timeout passes first
const followUp = inngest.createFunction(
  { id: "follow-up" },
  { event: "message/sent" },
  async ({ event, step }) => {
    await step.sleep("give-them-a-moment", "1s");
    const reply = await step.waitForEvent("wait-for-reply", {
      event: "message/replied",
      match: "data.threadId",
      timeout: "3s",
    });
    if (!reply) {
      await step.run("send-reminder", () => sendReminder(event.data.threadId));
    }
    return { replied: Boolean(reply) };
  },
);

// step.sendEvent: fan out, one event (and one run) per user
const welcomeBatch = inngest.createFunction(
  { id: "welcome-batch" },
  { event: "users/imported" },
  async ({ event, step }) => {
    const users = await step.run("load-new-users", () => loadNewUsers(event.data.userIds));
    await step.sendEvent(
      "send-welcome-emails",
      users.map((user) => ({ name: "user/signup", data: { userId: user.id } })),
    );
    return { sent: users.length };
  },
);

// Parallel steps: Promise.all over step.run
const enrichProfile = inngest.createFunction(
  { id: "enrich-profile" },
  { event: "profile/enrich.requested" },
  async ({ event, step }) => {
    const [github, gitlab, mastodon] = await Promise.all([
      step.run("fetch-github", () => fetchProfile("github", event.data.userId)),
      step.run("fetch-gitlab", () => fetchProfile("gitlab", event.data.userId)),
      step.run("fetch-mastodon", () => fetchProfile("mastodon", event.data.userId)),
    ]);
    return { github, gitlab, mastodon };
  },
);

// ---- Beyond the guide's page: flow control -----------------------------------------------------------

// Concurrency with a key: one sync per account at a time
const syncAccountFunction = inngest.createFunction(
  { id: "sync-account", concurrency: [{ limit: 1, key: "event.data.accountId" }] },
  { event: "account/sync.requested" },
  async ({ event, step }) => {
    await step.run("sync", () => syncAccount(event.data.accountId));
  },
);

// Throttle: start at most one run per phone number per second (the others wait their turn)
const sendSmsFunction = inngest.createFunction(
  { id: "send-sms", throttle: { limit: 1, period: "1s", key: "event.data.phone" } },
  { event: "sms/requested" },
  async ({ event, step }) => {
    await step.run("send", () => sendSms(event.data.phone, event.data.text));
  },
);

// Rate limit: at most one run per user per minute (the others are skipped)
const syncContactsFunction = inngest.createFunction(
  { id: "sync-contacts", rateLimit: { limit: 1, period: "1m", key: "event.data.userId" } },
  { event: "contacts/sync.requested" },
  async ({ event, step }) => {
    await step.run("sync", () => syncContacts(event.data.userId));
  },
);

// Debounce: one run, with the last event, once a document has had no edit for 2 seconds
const indexDocumentFunction = inngest.createFunction(
  { id: "index-document", debounce: { period: "2s", key: "event.data.documentId" } },
  { event: "document/edited" },
  async ({ event, step }) => {
    await step.run("index", () => indexDocument(event.data.documentId, event.data.revision));
    return { revision: event.data.revision };
  },
);

// Batching: one run for up to 3 events (or whatever arrived within 5 s)
const bulkImport = inngest.createFunction(
  { id: "bulk-import", batchEvents: { maxSize: 3, timeout: "5s" } },
  { event: "rows/received" },
  async ({ events, step }) => {
    const rows = events.map((event) => event.data.row);
    return await step.run("import", () => importRows(rows));
  },
);

// Priority: one ticket answered at a time; enterprise tickets jump the queue by up to 2 minutes,
// pro ones by 1
const supportTicket = inngest.createFunction(
  {
    id: "support-ticket",
    concurrency: 1,
    priority: {
      run: "event.data.plan == 'enterprise' ? 120 : (event.data.plan == 'pro' ? 60 : 0)",
    },
  },
  { event: "ticket/opened" },
  async ({ event, step }) => {
    await step.run("answer", () => answerTicket(event.data.ticketId, event.data.plan));
  },
);

// Singleton: one sync per user at a time; a request while one is active is skipped
const syncInboxFunction = inngest.createFunction(
  { id: "sync-inbox", singleton: { key: "event.data.userId", mode: "skip" } },
  { event: "inbox/sync.requested" },
  async ({ event, step }) => {
    await step.sleep("provider-cooldown", "2s");
    await step.run("sync", () => syncInbox(event.data.userId));
  },
);

// onFailure: runs once the function has failed, with the error and the original event
const chargeCardFunction = inngest.createFunction(
  {
    id: "charge-card",
    retries: 0,
    onFailure: async ({ event, error, step }) => {
      await step.run("notify-billing", () =>
        notifyBilling(event.data.event.data.invoiceId, error.message),
      );
    },
  },
  { event: "card/charge.requested" },
  async ({ event, step }) => {
    await step.run("charge", () => chargeCard(event.data.invoiceId));
  },
);

export const functions = [
  processWithTimestamp,
  processOrder,
  completePurchase,
  welcomeNewUser,
  rewardBigPurchase,
  onboardUser,
  refreshEverySixHours,
  fridayNoonParis,
  generateReportFunction,
  weeklyReport,
  sendCheckoutEmail,
  processUserAction,
  processWithTimeout,
  finishInTime,
  startInTime,
  cleanupCancelled,
  reliableFunction,
  processUser,
  respectRateLimit,
  processDataFunction,
  realTimeFunction,
  conditionalProcess,
  robustProcess,
  approveInvoice,
  followUp,
  welcomeBatch,
  enrichProfile,
  syncAccountFunction,
  sendSmsFunction,
  syncContactsFunction,
  indexDocumentFunction,
  bulkImport,
  supportTicket,
  syncInboxFunction,
  chargeCardFunction,
];
