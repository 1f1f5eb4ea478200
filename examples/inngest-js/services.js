// Stand-ins for the database, the payment and email providers and the external APIs the guide's
// functions call. Every call is recorded; the app's server lists them at GET /calls, so you can
// see that each step body ran exactly once (and a retried one once per attempt).
export const calls = [];

// Gates a stand-in waits on until they are opened (the server's POST /gates/{name}): a run
// holding its function's only concurrency slot for as long as a test needs it held.
const gates = new Map();
const gate = (name) => {
  if (!gates.has(name)) {
    let open;
    const opened = new Promise((resolve) => {
      open = resolve;
    });
    gates.set(name, { opened, open });
  }
  return gates.get(name);
};
export const openGate = (name) => gate(name).open();

const inFlight = new Map(); // per account: the syncs running right now

function service(name, body = () => ({ ok: true })) {
  return async (...args) => {
    calls.push({ service: name, args, at: Date.now() });
    return body(...args);
  };
}

const seen = new Map(); // calls per key, for the services that fail the first times
const nth = (key) => {
  const n = (seen.get(key) ?? 0) + 1;
  seen.set(key, n);
  return n;
};

export const processData = service("processData", (data, timestamp) => ({ ...data, timestamp }));
export const processPayment = service("processPayment", (order) => ({ charged: order.amount }));
export const fetchUserData = service("fetchUserData", (userId) => ({ userId, name: "Ada" }));
export const fetchOrderData = service("fetchOrderData", (userId) => [{ userId, orderId: "o-1" }]);
export const validatePayment = service("validatePayment", (paymentId) => ({ paymentId }));
export const chargeCustomer = service("chargeCustomer", (data) => ({ charged: data.amount }));
export const sendEmail = service("sendEmail");
export const welcomeUser = service("welcomeUser");
export const rewardPurchase = service("rewardPurchase");
export const startOnboarding = service("startOnboarding");
export const sendTimedReport = service("sendTimedReport");
export const buildReport = service("buildReport", (userId) => ({ userId, rows: 3 }));
export const processReport = service("processReport", (report) => ({ processed: report.rows }));
export const recordUserAction = service("recordUserAction");
export const runLongProcess = service("runLongProcess");
export const cleanupOrderResources = service("cleanupOrderResources");
// fails twice for each task, then works
export const callCriticalService = service("callCriticalService", (task) => {
  if (nth(`critical:${task.taskId}`) <= 2) throw new Error("critical service unavailable");
  return { done: task.taskId };
});
export const callBackupService = service("callBackupService");
export const db = {
  users: {
    findOne: service("db.users.findOne", (userId) =>
      userId === "missing" ? null : { id: userId, name: "Grace" },
    ),
  },
};
export const updateUser = service("updateUser");
// answers 429 (retry after 3 s: later than a dev server's first retry) to the first call for
// each request, then 200
export const externalAPI = {
  call: service("externalAPI.call", (data) =>
    nth(`api:${data.requestId}`) === 1
      ? { status: 429, headers: { "retry-after": "3" } }
      : { status: 200, data: { requestId: data.requestId } },
  ),
};
export const process1 = service("process1", (data) => ({ value: data.value + 1 }));
export const process2 = service("process2", (result) => ({ value: result.value * 2 }));
export const getUserData = service("getUserData", (userId) => ({
  userId,
  isPremium: userId.startsWith("premium"),
}));
export const processPremiumFeatures = service("processPremiumFeatures");
export const processStandardFeatures = service("processStandardFeatures");
export const callPrimaryService = service("callPrimaryService", () => {
  throw new Error("primary service unavailable");
});
export const callSecondaryService = service("callSecondaryService", (data) => ({
  from: "secondary",
  ...data,
}));
export const sendReminder = service("sendReminder");
export const fileInvoice = service("fileInvoice");
export const loadNewUsers = service("loadNewUsers", (ids) => ids.map((id) => ({ id })));
export const fetchProfile = service("fetchProfile", (source, userId) => ({ source, userId }));
// records how many syncs of the same account were running when it started
export const syncAccount = async (accountId) => {
  const running = inFlight.get(accountId) ?? 0;
  calls.push({ service: "syncAccount", args: [accountId], running, at: Date.now() });
  inFlight.set(accountId, running + 1);
  await new Promise((resolve) => setTimeout(resolve, 300));
  inFlight.set(accountId, inFlight.get(accountId) - 1);
};
export const sendSms = service("sendSms");
export const syncContacts = service("syncContacts");
export const indexDocument = service("indexDocument");
export const importRows = service("importRows", (rows) => rows.length);
// a ticket of plan "hold" is answered once the gate "tickets" opens
export const answerTicket = service("answerTicket", async (ticketId, plan) => {
  if (plan === "hold") await gate("tickets").opened;
});
// job "j-hold" is done once the gate "jobs" opens
export const doJob = service("doJob", async (jobId) => {
  if (jobId === "j-hold") await gate("jobs").opened;
});
export const syncInbox = service("syncInbox");
export const chargeCard = service("chargeCard", () => {
  throw new Error("card declined");
});
export const notifyBilling = service("notifyBilling");
