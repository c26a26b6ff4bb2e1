// An MCP client with the TypeScript SDK's own OAuth support against toolgate in
// `auth.mode = "jwt"`: StreamableHTTPClientTransport with an in-memory OAuthClientProvider.
// The SDK does the discovery itself (401 → `resource_metadata` from WWW-Authenticate → the
// protected-resource document → the authorization server's metadata), registers the client
// dynamically, and builds the authorization URL with PKCE (S256) and the resource indicator.
// The provider plays the user's browser: it follows that URL with fetch, signs in as ACCOUNT on
// the authorization server's login form, and takes the code from the redirect; the SDK then
// exchanges it (finishAuth) and the client reconnects with the token.
//
// Usage: node oauth_client.mjs <@modelcontextprotocol/sdk dir> <MCP URL> <ACCOUNT>
// Stdout, one JSON line each: {"step":"connected", "requests":[...], "claims":{...},
// "token":..., "tools":[...]} once initialized and tools listed; then, for every stdin line
// `call`, {"step":"call","result":...} (tools/call SANDBOX_ECHO). Exits 0 at stdin's end.

import readline from "node:readline";

const [, , sdkDir, mcpUrl, account] = process.argv;
const { Client } = await import(`${sdkDir}/dist/esm/client/index.js`);
const { StreamableHTTPClientTransport } = await import(`${sdkDir}/dist/esm/client/streamableHttp.js`);
const { UnauthorizedError } = await import(`${sdkDir}/dist/esm/client/auth.js`);

// Never fetched: the user agent stops at the redirect to it and reads the code.
const REDIRECT = "http://127.0.0.1:9/oauth/callback";
const MAX_HOPS = 10;

/// Every request the SDK made (method, URL, status), in order: the discovery it did by itself.
const requests = [];
async function recordingFetch(url, init) {
  const response = await fetch(url, init);
  requests.push({ method: init?.method ?? "GET", url: String(url), status: response.status });
  return response;
}

/// A browser stand-in with a cookie jar: follows redirects, submits the login form for
/// `account` on the authorization server's page, and returns the code sent to REDIRECT.
async function signIn(authorizationUrl) {
  const jar = new Map();
  const cookie = () => [...jar].map(([name, value]) => `${name}=${value}`).join("; ");
  let url = authorizationUrl;
  let init = { method: "GET" };
  for (let hop = 0; hop < MAX_HOPS; hop++) {
    const response = await fetch(url, { ...init, redirect: "manual", headers: { ...init.headers, cookie: cookie() } });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(";");
      const at = pair.indexOf("=");
      jar.set(pair.slice(0, at), pair.slice(at + 1));
    }
    const location = response.headers.get("location");
    if (location) {
      await response.arrayBuffer();
      const next = new URL(location, url);
      if (next.href.startsWith(REDIRECT)) {
        const code = next.searchParams.get("code");
        if (!code) throw new Error(`redirected without a code: ${next.href}`);
        return code;
      }
      url = next;
      init = { method: "GET" };
      continue;
    }
    const page = await response.text();
    if (response.status !== 200 || !page.includes('name="login"')) {
      throw new Error(`unexpected page at ${url}: ${response.status} ${page.slice(0, 300)}`);
    }
    init = {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ login: account }).toString(),
    };
  }
  throw new Error(`no code after ${MAX_HOPS} hops`);
}

/// The in-memory OAuthClientProvider: what a real client keeps in its store.
class MemoryProvider {
  stored = {};
  get redirectUrl() {
    return REDIRECT;
  }
  get clientMetadata() {
    return {
      client_name: "toolgate oauth e2e",
      redirect_uris: [REDIRECT],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      scope: "mcp",
    };
  }
  clientInformation() {
    return this.stored.client;
  }
  saveClientInformation(client) {
    this.stored.client = client;
  }
  tokens() {
    return this.stored.tokens;
  }
  saveTokens(tokens) {
    this.stored.tokens = tokens;
  }
  saveCodeVerifier(verifier) {
    this.stored.verifier = verifier;
  }
  codeVerifier() {
    return this.stored.verifier;
  }
  async redirectToAuthorization(url) {
    this.authorizationUrl = url.href;
    this.code = await signIn(url);
  }
}

const provider = new MemoryProvider();
const transport = () =>
  new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider, fetch: recordingFetch });

const first = new Client({ name: "oauth-e2e", version: "0" });
const pending = transport();
try {
  await first.connect(pending);
  throw new Error("connected without authorization");
} catch (error) {
  if (!(error instanceof UnauthorizedError)) throw error;
}
await pending.finishAuth(provider.code);

// Connects once with the token: the user's first request waits while toolgate creates their
// Composio session (the SDK does not retry a failed connect, so a 503 here fails the test).
const client = new Client({ name: "oauth-e2e", version: "0" });
await client.connect(transport());
const { tools } = await client.listTools();
const token = provider.stored.tokens.access_token;
const part = (index) => JSON.parse(Buffer.from(token.split(".")[index], "base64url").toString());
const print = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
print({
  step: "connected",
  requests,
  authorization_url: provider.authorizationUrl,
  header: part(0),
  claims: part(1),
  token,
  tools: tools.map((tool) => tool.name),
});

for await (const line of readline.createInterface({ input: process.stdin })) {
  if (line.trim() !== "call") throw new Error(`unknown command ${line}`);
  const result = await client.callTool({ name: "SANDBOX_ECHO", arguments: { message: `hello ${account}` } });
  print({ step: "call", result });
}
await client.close();
