// A test OAuth 2.1 authorization server for toolgate's `auth.mode = "jwt"`: panva's
// oidc-provider (pinned in tests/peers) on 127.0.0.1, a free port, with dynamic client
// registration, authorization code + PKCE and resource indicators (RFC 8707). An access token
// asked for a resource is a JWT (`typ: at+jwt`) signed with a P-256 key made at startup, with
// `aud` = that resource.
//
// Its login page is the only thing written here: GET /interaction/UID shows a form, and
// POST /interaction/UID with `login=ACCOUNT` signs that account in and grants what the client
// asked for (a user who says yes to everything), so a scripted user agent can complete the real
// authorization endpoint → login → redirect with a code, without a browser. Any account name
// is accepted: the account is the token's `sub`.
//
// Usage: node oauth_server.mjs <oidc-provider dir>
// Prints one JSON line on stdout once listening: {"issuer": ..., "jwks_uri": ...}; runs until
// killed.

import crypto from "node:crypto";
import http from "node:http";

const [, , providerDir] = process.argv;
const { default: Provider } = await import(`${providerDir}/lib/index.js`);

const server = http.createServer();
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const signingKey = {
  ...crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ format: "jwk" }),
  kid: "oauth-e2e",
  alg: "ES256",
  use: "sig",
};
// The scope a client asks for toolgate's resource; the SDK client asks for it by name.
const MCP_SCOPE = "mcp";

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  // The only key is P-256: registered clients default to it.
  clientDefaults: { id_token_signed_response_alg: "ES256" },
  cookies: { keys: [crypto.randomBytes(32).toString("base64url")] },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // Every resource the client names is a JWT audience (toolgate checks `aud` itself).
      getResourceServerInfo: async (_ctx, resource) => ({
        audience: resource,
        scope: MCP_SCOPE,
        accessTokenFormat: "jwt",
        jwt: { sign: { alg: "ES256" } },
      }),
      // The token request of an authorization code repeats the code's resource.
      useGrantedResource: async () => true,
    },
  },
  // Registration checks a client's `scope` against these.
  scopes: ["openid", "offline_access", MCP_SCOPE],
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  interactions: { url: async (_ctx, interaction) => `/interaction/${interaction.uid}` },
});

/// Reads an `application/x-www-form-urlencoded` body.
async function form(req) {
  let body = "";
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

/// The login page: GET shows the form, POST signs the account in and grants the request.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  if (req.method === "GET") {
    const page = `<!doctype html><title>Sign in</title><form method="post">
<input name="login" autofocus><button>Sign in and allow</button></form>`;
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(page);
    return;
  }
  const accountId = (await form(req)).get("login");
  if (!accountId) {
    res.writeHead(400, { "content-type": "text/plain" });
    res.end("login is required");
    return;
  }
  const { params } = details;
  const grant = new provider.Grant({ accountId, clientId: params.client_id });
  if (params.scope) grant.addOIDCScope(params.scope);
  for (const resource of [params.resource].flat().filter(Boolean)) {
    grant.addResourceScope(resource, params.scope ?? MCP_SCOPE);
  }
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

const handler = provider.callback();
server.on("request", (req, res) => {
  if (req.url.startsWith("/interaction/")) {
    interaction(req, res).catch((error) => {
      console.error(`oauth_server: interaction failed: ${error}`);
      res.writeHead(400, { "content-type": "text/plain" });
      res.end(String(error));
    });
    return;
  }
  handler(req, res);
});
provider.on("server_error", (_ctx, error) => console.error(`oauth_server: ${error.stack}`));

console.log(JSON.stringify({ issuer, jwks_uri: `${issuer}/jwks` }));
