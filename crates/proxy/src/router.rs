//! The multi-user front of the MCP endpoint: identity in, route out, session ids sealed.
//!
//! For each request: the [`Authenticator`] names the user (401 with the mode's challenge when
//! it cannot, 503 when the JWT keys are unavailable); the binary's [`Router`] gives that
//! user's [`Route`] (a [`Gateway`] with the user's upstream and gate, and the route key that
//! names the upstream session); then, with [`SessionKeys`], the client's `Mcp-Session-Id` is
//! opened (another user's, a tampered one, or one from a route the user no longer has is
//! answered like an unknown session, 404, so the client re-initializes) and replaced by the
//! upstream's own id, and the upstream's id in the answer is sealed before the client sees it.
//! Everything MCP (the gate, forwarding, framing) stays in the gateway: this module never
//! reads a body.
//!
//! Without session keys the upstream's session ids pass through as they do in single-user
//! mode (one replica, or sticky sessions).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::gateway::{BoxError, Gateway, ProxyBody};
use crate::identity::{AuthError, Authenticator, UserId};
use crate::seal::{SessionKeys, SessionParts};

/// The session header of Streamable HTTP.
const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// JSON-RPC "server error" code of toolgate's local answers.
const SERVER_ERROR: i64 = -32000;

/// Where one user's MCP traffic goes.
#[derive(Clone, Debug)]
pub struct Route {
    /// The gateway serving this user (their upstream and gate).
    pub gateway: Gateway,
    /// Names the user's upstream session (for Composio, its tool-router session): a sealed
    /// session id made on another route is unknown on this one.
    pub route_key: String,
}

/// Why a user has no route right now (their upstream is still being set up, or failed).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct RouteError(pub String);

/// Gives each user their route; the binary implements it over its per-user pool.
pub trait Router: Send + Sync + 'static {
    /// The route of `user`, created on first use. `pinned` is the route key a sealed session
    /// id names (the session lives there, possibly made by another replica): the router
    /// returns that route when it can still serve it, else the user's current one (the front
    /// then answers 404 and the client starts a new session).
    fn route<'a>(
        &'a self,
        user: &'a UserId,
        pinned: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Route, RouteError>>;
}

/// The MCP endpoint for many users (and for replicas, with session keys).
pub struct MultiUser {
    authenticator: Arc<Authenticator>,
    router: Arc<dyn Router>,
    keys: Option<SessionKeys>,
}

impl std::fmt::Debug for MultiUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiUser")
            .field("mode", &self.authenticator.mode())
            .field("sealed_sessions", &self.keys.is_some())
            .finish_non_exhaustive()
    }
}

// === impl MultiUser ===

impl MultiUser {
    /// A front resolving users with `authenticator`, routing with `router`, sealing session
    /// ids with `keys` when given.
    pub fn new(
        authenticator: Arc<Authenticator>,
        router: Arc<dyn Router>,
        keys: Option<SessionKeys>,
    ) -> Self {
        Self {
            authenticator,
            router,
            keys,
        }
    }

    /// The authenticator (the pages resolve their caller with it too).
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.authenticator
    }

    /// The router (for pages that show a user's own state).
    pub fn router(&self) -> &Arc<dyn Router> {
        &self.router
    }

    /// Answers one request to the MCP endpoint. Never fails.
    pub async fn handle<B>(&self, mut request: Request<B>) -> Response<ProxyBody>
    where
        B: http_body::Body<Data = bytes::Bytes>,
        B::Error: Into<BoxError>,
    {
        let user = match self.authenticator.identify(request.headers()).await {
            Ok(user) => user,
            Err(error) => return self.unauthenticated(&error),
        };
        let sealed = match &self.keys {
            Some(keys) => match open_session(keys, &user, request.headers()) {
                Ok(parts) => parts,
                Err(()) => return unknown_session(),
            },
            None => None,
        };
        let pinned = sealed.as_ref().map(|(_, parts)| parts.route_key.as_str());
        let route = match self.router.route(&user, pinned).await {
            Ok(route) => route,
            Err(error) => {
                return local_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("toolgate is not ready for this user yet: {error}"),
                );
            }
        };
        // The caller's credentials are toolgate's business only: never forwarded.
        request.headers_mut().remove(header::AUTHORIZATION);
        let Some(keys) = &self.keys else {
            return route.gateway.handle(request).await;
        };
        if let Some((_, parts)) = &sealed
            && unseal_request(&mut request, parts, &route).is_err()
        {
            return unknown_session();
        }
        let mut response = route.gateway.handle(request).await;
        // The client's sealed id goes along, to be handed back while its session is unchanged.
        seal_response(keys, &user, &route, sealed, response.headers_mut());
        response
    }

    /// The 401 (or 503) for a request without a usable identity.
    fn unauthenticated(&self, error: &AuthError) -> Response<ProxyBody> {
        if error.is_gateway_fault() {
            tracing::warn!(%error, "cannot check a bearer token");
            return local_error(StatusCode::SERVICE_UNAVAILABLE, &error.to_string());
        }
        let mut response = local_error(StatusCode::UNAUTHORIZED, &format!("Unauthorized: {error}"));
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            self.authenticator.challenge(error),
        );
        response
    }
}

/// The request's sealed `Mcp-Session-Id` and its parts (`None` without one); `Err` when it
/// does not open for `user`.
fn open_session(
    keys: &SessionKeys,
    user: &UserId,
    headers: &http::HeaderMap,
) -> Result<Option<(HeaderValue, SessionParts)>, ()> {
    let Some(value) = headers.get(&MCP_SESSION_ID) else {
        return Ok(None);
    };
    let parts = keys
        .open_for(value.to_str().map_err(|_| ())?, user)
        .map_err(|_| ())?;
    Ok(Some((value.clone(), parts)))
}

/// Swaps the client's sealed id in `request` for the upstream's own. `Err` when the id was
/// made on another route.
fn unseal_request<B>(
    request: &mut Request<B>,
    parts: &SessionParts,
    route: &Route,
) -> Result<(), ()> {
    if parts.route_key != route.route_key {
        return Err(());
    }
    if parts.url_elicitation
        && let Some(upstream) = &parts.upstream_session
    {
        route.gateway.remember_url_elicitation(upstream);
    }
    set_upstream_session(request.headers_mut(), parts.upstream_session.clone())
}

/// Puts the upstream's own session id where the sealed one was.
fn set_upstream_session(headers: &mut http::HeaderMap, upstream: Option<String>) -> Result<(), ()> {
    match upstream {
        Some(id) => {
            headers.insert(MCP_SESSION_ID, HeaderValue::from_str(&id).map_err(|_| ())?);
        }
        None => {
            headers.remove(&MCP_SESSION_ID);
        }
    }
    Ok(())
}

/// Seals the upstream's `Mcp-Session-Id` in an answer. An upstream that repeats its id on
/// every answer (the TypeScript SDK's does) gets the client's own sealed id handed back while
/// nothing in it changed: a client that stores the id of every answer keeps one value, and no
/// answer pays for a new seal.
fn seal_response(
    keys: &SessionKeys,
    user: &UserId,
    route: &Route,
    presented: Option<(HeaderValue, SessionParts)>,
    headers: &mut http::HeaderMap,
) {
    let Some(upstream) = headers.get(&MCP_SESSION_ID) else {
        return;
    };
    let parts = upstream.to_str().ok().map(|upstream| SessionParts {
        user: user.clone(),
        route_key: route.route_key.clone(),
        upstream_session: Some(upstream.to_owned()),
        url_elicitation: route.gateway.declares_url_elicitation(upstream),
    });
    if let (Some(parts), Some((value, held))) = (&parts, presented)
        && *parts == held
    {
        headers.insert(MCP_SESSION_ID, value);
        return;
    }
    let sealed = parts.map(|parts| keys.seal(&parts));
    match sealed.and_then(|sealed| HeaderValue::from_str(&sealed).ok()) {
        Some(value) => {
            headers.insert(MCP_SESSION_ID, value);
        }
        // An upstream id that is not visible ASCII cannot be a valid header value anyway.
        None => {
            headers.remove(&MCP_SESSION_ID);
        }
    }
}

/// The answer to a session id this caller does not have (MCP: 404, then re-initialize).
fn unknown_session() -> Response<ProxyBody> {
    local_error(StatusCode::NOT_FOUND, "Session not found")
}

/// A JSON-RPC error body without an id (the request was never parsed).
fn local_error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": { "code": SERVER_ERROR, "message": message },
    })
    .to_string();
    let mut response = Response::new(
        Full::new(bytes::Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
