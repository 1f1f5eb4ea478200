// The example app: the guide's functions served to Inngest (or `stepline dev`) at /api/inngest by
// the SDK's handler for a plain Node HTTP server, on $PORT (default 3000, where dev servers look).
//   POST /checkout/{cartId}: sends cart/checkout.completed with a deduplicating id (the guide's
//                            producer-side idempotency)
//   GET /calls:              what the stand-in services were asked to do, in order
//   POST /gates/{name}:      lets the stand-ins waiting on that gate go on
import http from "node:http";
import { client, serve } from "./client.js";
import { completeCheckout, functions } from "./functions.js";
import { calls, openGate } from "./services.js";

const inngestHandler = serve({ client, functions });

function reply(res, status, body) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(body));
}

const server = http.createServer(async (req, res) => {
  const { pathname } = new URL(req.url, "http://localhost");
  if (pathname === "/api/inngest") return inngestHandler(req, res);
  if (req.method === "GET" && pathname === "/calls") return reply(res, 200, calls);
  const opened = pathname.match(/^\/gates\/([\w-]+)$/);
  if (req.method === "POST" && opened) {
    openGate(opened[1]);
    return reply(res, 200, { opened: opened[1] });
  }
  const checkout = pathname.match(/^\/checkout\/([\w-]+)$/);
  if (req.method === "POST" && checkout) {
    await completeCheckout(checkout[1]);
    return reply(res, 200, { sent: true });
  }
  reply(res, 404, { error: "not found" });
});

const port = Number(process.env.PORT || 3000);
server.listen(port, process.env.HOST || "127.0.0.1", () => {
  console.log(`my-app listening on http://127.0.0.1:${port}/api/inngest`);
});
