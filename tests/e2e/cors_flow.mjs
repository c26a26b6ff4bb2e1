// A browser MCP client on another origin: headless Chromium (through playwright-core) opens a
// blank page on each origin given and, from that page, calls `initialize`,
// `notifications/initialized` and `tools/list` on toolgate with fetch(), as the MCP
// Inspector's direct mode or a web agent would. Hosts like app.test are mapped to 127.0.0.1 by
// the resolver rule, so one local page server can play several origins.
//
// Usage: node cors_flow.mjs <playwright-core dir> <MCP URL> <token> <origin>...
// Prints one JSON line: for each origin what the page could do; exits non-zero on a failure of
// the script itself (a refused fetch is a result, not a failure).

const [, , playwrightDir, mcpUrl, token, ...origins] = process.argv;
const { chromium } = await import(`${playwrightDir}/index.mjs`);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP *.test 127.0.0.1",
    ...(process.env.ALLOWED_PORTS ? [`--explicitly-allowed-ports=${process.env.ALLOWED_PORTS}`] : []),
  ],
});

// Runs in the page: the MCP handshake and one request, over fetch.
async function mcpFromPage({ url, token }) {
  const headers = {
    "Content-Type": "application/json",
    Accept: "application/json, text/event-stream",
    Authorization: `Bearer ${token}`,
  };
  const rpc = (body) => JSON.stringify({ jsonrpc: "2.0", ...body });
  const messages = (text) =>
    text.trim().startsWith("{")
      ? [JSON.parse(text)]
      : text
          .split("\n")
          .filter((line) => line.startsWith("data:") && line.slice(5).trim())
          .map((line) => JSON.parse(line.slice(5)));
  try {
    const init = await fetch(url, {
      method: "POST",
      headers,
      body: rpc({
        id: 1,
        method: "initialize",
        params: {
          protocolVersion: "2025-11-25",
          capabilities: {},
          clientInfo: { name: "browser", version: "0" },
        },
      }),
    });
    const session = init.headers.get("mcp-session-id");
    const initAnswer = messages(await init.text());
    const next = { ...headers, "Mcp-Protocol-Version": "2025-11-25" };
    if (session) next["Mcp-Session-Id"] = session;
    const initialized = await fetch(url, {
      method: "POST",
      headers: next,
      body: rpc({ method: "notifications/initialized" }),
    });
    const list = await fetch(url, {
      method: "POST",
      headers: next,
      body: rpc({ id: 2, method: "tools/list" }),
    });
    const tools = messages(await list.text()).find((m) => m.id === 2)?.result?.tools ?? [];
    return {
      reached: true,
      initStatus: init.status,
      sessionVisible: Boolean(session),
      serverName: initAnswer.find((m) => m.id === 1)?.result?.serverInfo?.name ?? null,
      initializedStatus: initialized.status,
      listStatus: list.status,
      tools: tools.map((tool) => tool.name),
    };
  } catch (error) {
    return { reached: false, error: String(error) };
  }
}

const seen = {};
try {
  for (const origin of origins) {
    const page = await browser.newPage();
    page.setDefaultTimeout(30_000);
    await page.goto(`${origin}/`);
    seen[origin] = await page.evaluate(mcpFromPage, { url: mcpUrl, token });
    await page.close();
  }
  console.log(JSON.stringify(seen));
} finally {
  await browser.close();
}
