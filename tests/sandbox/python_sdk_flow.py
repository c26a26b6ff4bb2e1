"""Fidelity check: the official Composio Python SDK (composio 0.30.0) against the sandbox.

Runs the flow of Composio's "manually authenticating users" guide, the one toolgate automates:
create(user_id, manage_connections=False) -> toolkits() -> authorize("gmail", callback_url)
-> (the user clicks Allow; here a helper thread answers through the sandbox's control plane
once it sees the SDK polling) -> wait_for_connection() -> toolkits() shows gmail ACTIVE
-> session.mcp.url and headers. It also validates the raw responses strictly against the
SDK's own pydantic models (the SDK itself parses leniently), and checks error mapping.

Environment: COMPOSIO_BASE_URL (the sandbox) and COMPOSIO_API_KEY. Prints one line per
check and exits non-zero on the first failure.
"""

import json
import os
import sys
import threading
import time
import urllib.request

from composio import Composio
from composio_client import NotFoundError, BadRequestError
from composio_client.types import connected_account_list_response, connected_account_retrieve_response
from composio_client.types.tool_router import (
    session_create_response,
    session_link_response,
    session_retrieve_response,
    session_toolkits_response,
)

BASE = os.environ["COMPOSIO_BASE_URL"].rstrip("/")
KEY = os.environ["COMPOSIO_API_KEY"]
USER = "fidelity-user"


def check(condition, message):
    if not condition:
        print(f"FAIL {message}", flush=True)
        sys.exit(1)
    print(f"ok {message}", flush=True)


def http(method, path, body=None, key=True):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(BASE + path, data=data, method=method)
    if key:
        request.add_header("x-api-key", KEY)
    if data is not None:
        request.add_header("content-type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def allow_when_polled(account_id, link_token, done):
    """The user's click: answer the link only after the SDK has polled the account at least
    once, so wait_for_connection really goes through INITIATED -> ACTIVE."""
    wanted = f"/api/v3.1/connected_accounts/{account_id}"
    deadline = time.time() + 30
    while time.time() < deadline:
        log = http("GET", "/_sandbox/requests", key=False)["requests"]
        if any(entry["method"] == "GET" and entry["path"] == wanted for entry in log):
            # The control plane answers with a 303 to the callback; do not follow it.
            opener = urllib.request.build_opener(NoRedirect)
            opener.open(urllib.request.Request(f"{BASE}/_sandbox/links/{link_token}/allow", data=b"", method="POST"), timeout=10)
            done.set()
            return
        time.sleep(0.05)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

    def http_error_303(self, request, response, code, message, headers):
        return response


def main():
    # allow_tracking=False keeps the SDK's telemetry thread (telemetry.composio.dev) off.
    composio = Composio(allow_tracking=False)

    session = composio.create(user_id=USER, manage_connections=False)
    check(session.session_id.startswith("trs_"), f"create: session {session.session_id}")
    check(session.mcp.url == f"{BASE}/tool_router/{session.session_id}/mcp", f"mcp.url {session.mcp.url}")
    check(session.mcp.headers == {"x-api-key": KEY}, "mcp.headers carry exactly x-api-key (same origin as the API)")

    raw = http("GET", f"/api/v3.1/tool_router/session/{session.session_id}")
    session_retrieve_response.SessionRetrieveResponse.model_validate(raw)
    check("COMPOSIO_MANAGE_CONNECTIONS" not in raw["tool_router_tools"], "strict: session retrieve; no MANAGE_CONNECTIONS")
    check(raw["config"]["manage_connections"]["enabled"] is False, "config echoes manage_connections.enabled=false")
    created = http("POST", "/api/v3.1/tool_router/session", {"user_id": USER, "manage_connections": {"enable": False}, "toolkits": {"enable": ["gmail"]}})
    session_create_response.SessionCreateResponse.model_validate(created)
    check(created["config"]["toolkits"] == {"enabled": ["gmail"]}, "strict: session create response")

    states = session.toolkits(toolkits=["gmail", "github", "hackernews"])
    by_slug = {item.slug: item for item in states.items}
    check(set(by_slug) == {"gmail", "github", "hackernews"}, "toolkits(): the three requested toolkits")
    check(by_slug["gmail"].connection is not None and by_slug["gmail"].connection.is_active is False, "gmail not active yet")
    check(by_slug["hackernews"].is_no_auth and by_slug["hackernews"].connection is None, "hackernews is no-auth")
    check(by_slug["gmail"].logo.startswith(BASE), "logo served by the sandbox")
    raw = http("GET", f"/api/v3.1/tool_router/session/{session.session_id}/toolkits?limit=50")
    session_toolkits_response.SessionToolkitsResponse.model_validate(raw)
    check(raw["next_cursor"] is not None and raw["total_pages"] >= 2, "strict: toolkits page 1 of several")

    # Walk the whole catalog through the SDK's own cursor handling.
    seen, cursor, pages = [], None, 0
    while True:
        page = session.toolkits(limit=50, next_cursor=cursor)
        pages += 1
        seen.extend(item.slug for item in page.items)
        cursor = page.next_cursor
        if not cursor:
            break
    check(pages == page.total_pages and len(seen) == len(set(seen)) == raw["total_items"], f"SDK paginates {len(seen)} toolkits over {pages} pages")

    callback = "http://127.0.0.1:9/callback?user_id=fidelity-user&source=sdk"
    request = session.authorize("gmail", callback_url=callback)
    check(request.id.startswith("ca_") and request.status == "INITIATED", f"authorize: {request.id}")
    check(request.redirect_url.startswith(f"{BASE}/link/ln_"), f"redirect_url {request.redirect_url}")
    link_token = request.redirect_url.rsplit("/", 1)[-1]
    raw = http("GET", f"/api/v3.1/connected_accounts/{request.id}")
    connected_account_retrieve_response.ConnectedAccountRetrieveResponse.model_validate(raw)
    # A new account passes through INITIALIZING (both validate against the SDK's model).
    check(raw["status"] in ("INITIALIZING", "INITIATED"), f"strict: connected account ({raw['status']})")

    done = threading.Event()
    clicker = threading.Thread(target=allow_when_polled, args=(request.id, link_token, done), daemon=True)
    clicker.start()
    account = request.wait_for_connection(timeout=30)
    check(done.is_set() and account.status == "ACTIVE", "wait_for_connection() returned ACTIVE after polling")
    raw = http("GET", f"/api/v3.1/connected_accounts/{request.id}")
    connected_account_retrieve_response.ConnectedAccountRetrieveResponse.model_validate(raw)
    check(raw["state"]["val"]["status"] == "ACTIVE", "strict: connected account (ACTIVE)")

    states = session.toolkits(toolkits=["gmail"])
    gmail = states.items[0]
    check(gmail.connection.is_active and gmail.connection.connected_account.id == request.id, "toolkits() shows gmail ACTIVE")
    check(gmail.connection.auth_config.is_composio_managed and gmail.connection.auth_config.mode == "OAUTH2", "auth config is Composio-managed OAuth2")

    listed = composio.connected_accounts.list(user_ids=[USER], toolkit_slugs=["gmail"], statuses=["ACTIVE"])
    check([item.id for item in listed.items] == [request.id], "connected_accounts.list filters")
    raw = http("GET", f"/api/v3.1/connected_accounts?user_ids={USER}")
    connected_account_list_response.ConnectedAccountListResponse.model_validate(raw)
    check(raw["total_items"] == 1, "strict: connected accounts list")

    again = composio.use(session.session_id)
    check(again.mcp.url == session.mcp.url and again.mcp.headers == {"x-api-key": KEY}, "use(session_id) rebuilds the same MCP endpoint")

    # Errors map to the SDK's classes, with the request id from x-request-id.
    try:
        session.authorize("shopify")
        check(False, "authorize(shopify) should fail")
    except NotFoundError as error:
        check(error.status_code == 404 and bool(error.request_id), f"no auth config -> NotFoundError (request {error.request_id})")
    try:
        composio.create(user_id=USER, toolkits={"enabled": ["gmail"]})
        check(False, "toolkits.enabled should fail")
    except BadRequestError as error:
        errors = (error.details or {}).get("errors")
        check(error.status_code == 400 and errors == ["Error in payload.toolkits: Invalid input"], "toolkits.enabled -> BadRequestError with the envelope's errors")

    link = http("POST", f"/api/v3.1/tool_router/session/{session.session_id}/link", {"toolkit": "github"})
    session_link_response.SessionLinkResponse.model_validate(link)
    check(link["link_token"].startswith("ln_"), "strict: link response")

    deleted = composio.connected_accounts.delete(request.id)
    check(getattr(deleted, "success", None) is True, "connected_accounts.delete")
    print("PYTHON SDK FLOW PASSED", flush=True)


if __name__ == "__main__":
    main()
