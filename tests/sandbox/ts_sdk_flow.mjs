// Fidelity check: the official Composio TypeScript SDK (@composio/core 0.17.0) against the
// sandbox, through the flow toolgate automates: create(userId, {manageConnections: false}) ->
// toolkits() -> authorize("gmail", {callbackUrl}) -> Allow (answered through the sandbox's
// control plane once the SDK has polled) -> waitForConnection() -> toolkits() shows gmail
// ACTIVE -> session.mcp.url and headers.
//
// Environment: COMPOSIO_BASE_URL, COMPOSIO_API_KEY, and NODE_PATH-free resolution through
// TOOLGATE_NODE_MODULES (the peers' node_modules directory). Prints one line per check and
// exits non-zero on the first failure.

import { createRequire } from "node:module";
import path from "node:path";

const base = process.env.COMPOSIO_BASE_URL.replace(/\/$/, "");
const key = process.env.COMPOSIO_API_KEY;
const modules = process.env.TOOLGATE_NODE_MODULES;
const require = createRequire(path.join(modules, "noop.js"));
const { Composio } = await import(require.resolve("@composio/core"));

function check(condition, message) {
  if (!condition) {
    console.log(`FAIL ${message}`);
    process.exit(1);
  }
  console.log(`ok ${message}`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The user's click, after the SDK has polled the account at least once.
async function allowWhenPolled(accountId, linkToken) {
  const wanted = `/api/v3.1/connected_accounts/${accountId}`;
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
    const log = await (await fetch(`${base}/_sandbox/requests`)).json();
    if (log.requests.some((entry) => entry.method === "GET" && entry.path === wanted)) {
      const answer = await fetch(`${base}/_sandbox/links/${linkToken}/allow`, { method: "POST", redirect: "manual" });
      return answer.status;
    }
    await sleep(50);
  }
  return 0;
}

// allowTracking: false keeps telemetry off; disableVersionCheck: no npm registry lookup.
const composio = new Composio({ allowTracking: false, disableVersionCheck: true });

const session = await composio.create("ts-fidelity-user", { manageConnections: false });
check(session.sessionId.startsWith("trs_"), `create: session ${session.sessionId}`);
check(session.mcp.url === `${base}/tool_router/${session.sessionId}/mcp`, `mcp.url ${session.mcp.url}`);
check(JSON.stringify(session.mcp.headers) === JSON.stringify({ "x-api-key": key }), "mcp.headers carry exactly x-api-key");

let states = await session.toolkits({ toolkits: ["gmail", "github", "hackernews"] });
const bySlug = Object.fromEntries(states.items.map((item) => [item.slug, item]));
check(Object.keys(bySlug).sort().join(",") === "github,gmail,hackernews", "toolkits(): the three requested toolkits");
check(bySlug.gmail.connection && bySlug.gmail.connection.isActive === false, "gmail not active yet");
check(bySlug.hackernews.isNoAuth === true && bySlug.hackernews.connection === undefined, "hackernews is no-auth");

let cursor;
let pages = 0;
const seen = new Set();
do {
  const page = await session.toolkits({ limit: 50, cursor });
  pages += 1;
  page.items.forEach((item) => seen.add(item.slug));
  cursor = page.cursor;
  if (!cursor) check(page.totalPages === pages, `SDK paginates ${seen.size} toolkits over ${pages} pages`);
} while (cursor);
check(pages >= 2, "several pages at limit 50");

const request = await session.authorize("gmail", { callbackUrl: "http://127.0.0.1:9/callback?source=ts" });
check(request.id.startsWith("ca_") && request.status === "INITIATED", `authorize: ${request.id}`);
check(request.redirectUrl.startsWith(`${base}/link/ln_`), `redirectUrl ${request.redirectUrl}`);
const clicked = allowWhenPolled(request.id, request.redirectUrl.split("/").pop());
const account = await request.waitForConnection(30_000);
check((await clicked) === 303 && account.status === "ACTIVE", "waitForConnection() returned ACTIVE after polling");

states = await session.toolkits({ toolkits: ["gmail"] });
const gmail = states.items[0];
check(gmail.connection.isActive && gmail.connection.connectedAccount.id === request.id, "toolkits() shows gmail ACTIVE");

const again = await composio.use(session.sessionId);
check(again.mcp.url === session.mcp.url, "use(sessionId) rebuilds the same MCP endpoint");

try {
  await session.authorize("shopify");
  check(false, "authorize(shopify) should fail");
} catch (error) {
  check(error.status === 404 || error.cause?.status === 404 || /404/.test(String(error)), `no auth config -> 404 (${error.constructor.name})`);
}

// A denied link is a terminal state for waitForConnection.
const denied = await session.authorize("github");
await fetch(`${base}/_sandbox/links/${denied.redirectUrl.split("/").pop()}/deny`, { method: "POST", redirect: "manual" });
try {
  await denied.waitForConnection(10_000);
  check(false, "a denied link should not connect");
} catch (error) {
  check(/FAILED|denied/i.test(String(error.message ?? error)), `denied link -> ${error.constructor.name}`);
}
console.log("TS SDK FLOW PASSED");
