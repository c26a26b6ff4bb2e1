//! The pages in multi-user modes: every page request is resolved to one user, and the page
//! shows and acts on that user's toolkits only.
//!
//! A caller is one of (first match wins):
//! - a signed page link (`/connections?u=…&exp=…&sig=…`, the link a blocked answer carries):
//!   checked, then kept in an `HttpOnly` cookie and redirected to the clean URL, so the page's
//!   own links, forms and self-refresh work without a login and the link leaves the address
//!   bar; a tampered or expired link gets a page saying so;
//! - a request with credentials of the configured mode (`Authorization: Bearer` token or
//!   JWT; in header mode the user header with the shared token), as on the MCP endpoint;
//! - the cookie a page link left, until the link's own expiry.
//!
//! `/callback` names its user itself (signed into the callback URL given to Composio), so it
//! needs none of these: a forged or expired one is refused. Forms carry a per-user CSRF tag,
//! the same on every replica with the `session_key`, so a form made for alice never passes for
//! bob.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::header::SET_COOKIE;
use http::{Method, Request, Response, StatusCode};
use tokio::sync::watch;
use toolgate_proxy::identity::{AuthError, Authenticator, UserId};
use toolgate_proxy::limits::RequestBody as Incoming;

use super::signed::{LinkError, LinkSigner, Purpose, unix_now};
use super::{Actions, App, Body, Scope, guard, html, pages, redirect};
use crate::status::StatusView;

/// The cookie a checked page link leaves (its `u`, `exp` and `sig`).
pub(crate) const PAGE_COOKIE: &str = "toolgate_page";

/// One user's status and tracker actions.
pub(crate) type UserScope = (watch::Receiver<StatusView>, Arc<dyn Actions>);

/// Gives the pages one user's status and tracker; their wiring is made on first use, as on
/// their first MCP request.
pub(crate) trait Scopes: Send + Sync + 'static {
    /// `user`'s status and tracker actions, or why they cannot be had now.
    fn scope<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<UserScope, String>>;
}

/// What the multi-user pages need: who the caller is, and their scope.
pub(crate) struct UserPages {
    /// Resolves credentials on the pages as on the MCP endpoint.
    pub(crate) authenticator: Arc<Authenticator>,
    /// Signs and checks page links, callback users and form tags.
    pub(crate) signer: LinkSigner,
    /// Each user's status and tracker.
    pub(crate) scopes: Arc<dyn Scopes>,
}

/// Answers one page request (Host and Origin already checked).
pub(crate) async fn page(
    app: &App,
    users: &UserPages,
    method: Method,
    path: &str,
    request: Request<Incoming>,
) -> Response<Body> {
    let query = request.uri().query().unwrap_or_default().to_owned();
    let user = if path == "/callback" {
        match users.signer.verify(Purpose::Callback, &query, unix_now()) {
            Ok(user) => user,
            Err(error) => {
                tracing::info!(%error, "callback refused");
                return link_refused("This callback link", &error);
            }
        }
    } else if method == Method::GET && path == "/connections" && has_link(&query) {
        return open_link(users, &query);
    } else {
        match caller(users, request.headers()).await {
            Ok(user) => user,
            Err(refusal) => return refusal,
        }
    };
    let Ok(user) = UserId::new(&user) else {
        return link_refused("This link", &LinkError::Malformed);
    };
    let (status, actions) = match users.scopes.scope(&user).await {
        Ok(scope) => scope,
        Err(message) => {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::error(
                    "Not ready",
                    &format!("This user's page is not ready: {message}"),
                ),
            );
        }
    };
    let scope = Scope {
        status,
        actions,
        csrf: users.signer.tag(Purpose::Form, user.as_str()),
    };
    app.scoped(&scope, method, path, request).await
}

/// True when the query carries a page link's signature.
fn has_link(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "sig")
}

/// Checks a page link; a good one leaves its cookie and redirects to the clean URL.
fn open_link(users: &UserPages, query: &str) -> Response<Body> {
    let now = unix_now();
    if let Err(error) = users.signer.verify(Purpose::Page, query, now) {
        tracing::info!(%error, "page link refused");
        return link_refused("This page link", &error);
    }
    // Only the link's own fields go into the cookie.
    let kept: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            form_urlencoded::parse(query.as_bytes())
                .filter(|(name, _)| matches!(&**name, "u" | "exp" | "sig")),
        )
        .finish();
    let expires = form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| name == "exp")
        .and_then(|(_, value)| value.parse::<u64>().ok())
        .unwrap_or(now);
    let mut response = redirect("/connections");
    let cookie = format!(
        "{PAGE_COOKIE}={kept}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax",
        expires.saturating_sub(now)
    );
    if let Ok(value) = cookie.parse() {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

/// The user of a page request without a page link: credentials first, then the cookie.
async fn caller(users: &UserPages, headers: &http::HeaderMap) -> Result<String, Response<Body>> {
    let cookie = guard::cookie(headers, PAGE_COOKIE);
    if headers.contains_key(http::header::AUTHORIZATION) || cookie.is_none() {
        return match users.authenticator.identify(headers).await {
            Ok(user) => Ok(user.as_str().to_owned()),
            Err(error) => Err(unauthenticated(&users.authenticator, &error)),
        };
    }
    let cookie = cookie.unwrap_or_default();
    users
        .signer
        .verify(Purpose::Page, cookie, unix_now())
        .map_err(|error| link_refused("The page link you opened", &error))
}

/// 401 (503 when the credentials cannot be checked now) with the mode's challenge.
fn unauthenticated(authenticator: &Authenticator, error: &AuthError) -> Response<Body> {
    if error.is_gateway_fault() {
        return html(
            StatusCode::SERVICE_UNAVAILABLE,
            pages::error("Not ready", &error.to_string()),
        );
    }
    let mut response = html(
        StatusCode::UNAUTHORIZED,
        pages::error(
            "Sign-in required",
            "This gateway serves many users. Open your page through the link in a blocked \
             tool call's answer, or send your credentials (Authorization: Bearer).",
        ),
    );
    response.headers_mut().insert(
        http::header::WWW_AUTHENTICATE,
        authenticator.challenge(error),
    );
    response
}

/// The page for a link that does not hold: 403, saying whether it expired or is not valid.
fn link_refused(what: &str, error: &LinkError) -> Response<Body> {
    let (title, message) = match error {
        LinkError::Expired => (
            "Link expired",
            format!(
                "{what} has expired. A new one comes with the next blocked tool call's answer."
            ),
        ),
        LinkError::Malformed | LinkError::BadSignature => (
            "Link not valid",
            format!("{what} is not valid: it was changed, or made by another gateway."),
        ),
    };
    html(StatusCode::FORBIDDEN, pages::error(title, &message))
}

#[cfg(test)]
#[path = "users_tests.rs"]
mod tests;
