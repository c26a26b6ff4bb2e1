//! The binary's HTTP face: one listener serving the MCP endpoint (delegated to the proxy
//! library) next to the binary's own routes:
//!
//! | route | access | job |
//! |---|---|---|
//! | the MCP path | Host/Origin + token, CORS | the proxy library's gateway |
//! | `GET /connections` | Host/Origin + token (or cookie) | the connections page |
//! | `GET /connections/disconnect?toolkit=` | Host/Origin + token | confirmation form |
//! | `POST /connections/disconnect` | Host/Origin + token + CSRF | delete the connected account |
//! | `GET /callback` | Host/Origin + token | where Composio sends the browser; a hint only |
//! | `GET /healthz` | open | the process is alive |
//! | `GET /readyz` | open | 200 once the upstream is known; gate state as JSON, no secrets |
//! | `GET /metrics` | token | Prometheus text |
//! | `GET /.well-known/oauth-protected-resource[/mcp]` | open | JWT mode: RFC 9728 metadata |
//!
//! In multi-user modes the pages belong to one user each ([`users`]): the caller comes from
//! the signed link a blocked answer carries, the mode's credentials, or the cookie a link
//! left, and `/callback` names its user itself (signed).
//!
//! The access column is one module, `toolgate_proxy::access`, asked with the route's
//! [`Requirement`]; only the cookie and the `?token=` login are the pages' own ([`guard`]).
//!
//! `/healthz` and `/readyz` skip the Host check because orchestrator probes address the pod by
//! IP; they reveal nothing secret. `/metrics` skips the Host check for the same reason (scrapers)
//! but requires the token when one is configured.

pub(crate) mod guard;
pub(crate) mod pages;
pub(crate) mod signed;
pub(crate) mod users;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
// Every request body on the listener comes through the proxy's limits.
use tokio::net::TcpListener;
use tokio::sync::watch;
use toolgate_proxy::access::{Access, Refusal, Requirement};
use toolgate_proxy::gateway::{Gateway, ProxyBody};
use toolgate_proxy::identity::jwt::METADATA_PATH;
use toolgate_proxy::limits::RequestBody as Incoming;

use crate::metrics::Metrics;
use crate::status::{StatusView, ToolkitStatus};
use pages::CallbackOutcome;

/// Response body type shared with the proxy library's gateway.
pub(crate) type Body = ProxyBody;

/// What the pages can ask of the connection tracker.
pub(crate) trait Actions: Send + Sync + 'static {
    /// The OAuth callback arrived: re-check now (never marks anything connected by itself).
    fn hint(&self);
    /// Someone is looking at the page: toolkits without a live Connect Link get one.
    fn want_links(&self) {}
    /// Delete the toolkit's connected account at Composio (`account`: that one of several),
    /// then re-check.
    fn disconnect(
        &self,
        slug: String,
        account: Option<String>,
    ) -> BoxFuture<'static, Result<(), String>>;
    /// A Connect Link that adds another account for the toolkit (multi-account).
    fn add_account(&self, slug: String) -> BoxFuture<'static, Result<String, String>> {
        let _ = slug;
        Box::pin(async { Err("several accounts per toolkit are not enabled".to_owned()) })
    }
}

/// Largest form body accepted on the disconnect POST.
const FORM_LIMIT: usize = 8 * 1024;

/// How long `/callback` waits by default for the tracker to confirm a reported success before
/// answering (the tracker's re-check is one or two Composio calls).
pub(crate) const CALLBACK_CONFIRM_WAIT: Duration = Duration::from_secs(5);

/// Everything the routes need.
pub(crate) struct App {
    /// The listener's access rules, for every route.
    pub(crate) access: Access,
    /// The live status the pages render.
    pub(crate) status: watch::Receiver<StatusView>,
    /// Tracker actions (hint, disconnect).
    pub(crate) actions: Arc<dyn Actions>,
    /// Metrics registry for `/metrics`.
    pub(crate) metrics: Metrics,
    /// The single-user pages' CSRF token for state-changing forms ([`single_user_csrf_token`]).
    pub(crate) csrf_token: String,
    /// The MCP endpoint (the proxy library's gateway), mounted at its own path.
    pub(crate) gateway: Gateway,
    /// How long `/callback` waits for the tracker to confirm a reported success.
    pub(crate) callback_wait: Duration,
    /// Multi-user modes: the front that resolves the user and routes to their gateway.
    pub(crate) multi: Option<Arc<toolgate_proxy::router::MultiUser>>,
    /// Multi-user modes: each caller's own pages (signed links, bearer tokens).
    pub(crate) users: Option<users::UserPages>,
}

/// What one page request acts on: a user's status and tracker and their forms' CSRF token
/// (in single-user mode, the gateway's own).
pub(crate) struct Scope {
    /// The status the page renders.
    pub(crate) status: watch::Receiver<StatusView>,
    /// The tracker the page acts on.
    pub(crate) actions: Arc<dyn Actions>,
    /// The CSRF token the forms carry and the POST must return.
    pub(crate) csrf: String,
}

/// A fresh random CSRF token (URL-safe).
pub(crate) fn new_csrf_token() -> String {
    use base64::Engine as _;
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The single-user pages' CSRF token. With a `session_key` it is the user's form tag, the same
/// on every replica, so a form one replica served can be posted to another (replicas share no
/// state); without one, a random token that holds on this process only.
pub(crate) fn single_user_csrf_token(
    session_key: &[secrecy::SecretString],
    user: Option<&str>,
) -> String {
    match user {
        Some(user) if !session_key.is_empty() => {
            signed::LinkSigner::new(session_key).tag(signed::Purpose::Form, user)
        }
        _ => new_csrf_token(),
    }
}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn response(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut response = response(status, "text/html; charset=utf-8", body);
    // The pages need no script, no frames and no foreign content except logos.
    response.headers_mut().insert(
        "content-security-policy",
        http::HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src http: https: data:; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    response
        .headers_mut()
        .insert("x-frame-options", http::HeaderValue::from_static("DENY"));
    response
}

fn redirect(location: &str) -> Response<Body> {
    let mut response = response(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    if let Ok(value) = location.parse() {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

fn refusal_response(refusal: Refusal) -> Response<Body> {
    match refusal {
        Refusal::MalformedHost => html(
            StatusCode::BAD_REQUEST,
            pages::error(
                "Bad request",
                "The request needs one Host header (name[:port]).",
            ),
        ),
        Refusal::Host => html(
            StatusCode::FORBIDDEN,
            pages::error("Forbidden", "This Host is not allowed (see allowed_hosts)."),
        ),
        Refusal::Origin => html(
            StatusCode::FORBIDDEN,
            pages::error(
                "Forbidden",
                "This Origin is not allowed (see allowed_origins).",
            ),
        ),
        Refusal::Token => {
            let mut response = html(
                StatusCode::UNAUTHORIZED,
                pages::error(
                    "Token required",
                    "This gateway is protected by a token. Open /connections?token=<your token> once in this browser.",
                ),
            );
            response
                .headers_mut()
                .insert("www-authenticate", http::HeaderValue::from_static("Bearer"));
            response
        }
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

impl App {
    /// Routes one request.
    pub(crate) async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        // The MCP path first and without allocating: it is the hot path.
        if request.uri().path() == self.gateway.mcp_path() {
            // Host, Origin and CORS first (and the shared token, when one is set); then the
            // multi-user front resolves the user, or the one gateway serves.
            return self
                .access
                .serve_mcp(request, |request| async {
                    match &self.multi {
                        Some(front) => front.handle(request).await,
                        None => self.gateway.handle(request).await,
                    }
                })
                .await;
        }
        let started = Instant::now();
        let method = request.method().clone();
        // Log the path only: queries can carry the token or OAuth parameters.
        let path = request.uri().path().to_owned();
        let response = self.route(request).await;
        tracing::debug!(
            %method,
            path,
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "page request"
        );
        response
    }

    async fn route(&self, request: Request<Incoming>) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        match (method, path.as_str()) {
            (Method::GET | Method::HEAD, "/healthz") => {
                response(StatusCode::OK, "text/plain; charset=utf-8", "ok\n")
            }
            (Method::GET | Method::HEAD, "/readyz") => self.readyz(),
            (Method::GET | Method::HEAD, path) if path.starts_with(METADATA_PATH) => {
                self.resource_metadata(path)
            }
            (Method::GET | Method::HEAD, "/metrics") => {
                let uri = request.uri();
                match self
                    .access
                    .check(request.headers(), uri, Requirement::Token, None)
                {
                    Ok(_) => response(
                        StatusCode::OK,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        self.metrics.render(),
                    ),
                    Err(denial) => refusal_response(denial.refusal),
                }
            }
            (_, "/healthz" | "/readyz" | "/metrics") => method_not_allowed("GET"),
            (
                method,
                "/connections" | "/connections/disconnect" | "/connections/add" | "/callback",
            ) => self.page(method, &path, request).await,
            _ => response(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found\n",
            ),
        }
    }

    /// The pages: Host and Origin first, then the one-time `?token=` login or the token.
    async fn page(&self, method: Method, path: &str, request: Request<Incoming>) -> Response<Body> {
        let (headers, uri) = (request.headers(), request.uri());
        if let Err(denial) = self.access.check(headers, uri, Requirement::Site, None) {
            return refusal_response(denial.refusal);
        }
        if let Some(users) = &self.users {
            return users::page(self, users, method, path, request).await;
        }
        let query = uri.query().map(str::to_owned);
        // The one-time `?token=` login for browsers.
        if method == Method::GET
            && path == "/connections"
            && self.access.has_token()
            && let Some(candidate) = query_param(query.as_deref(), "token")
        {
            return self.token_login(&candidate);
        }
        let cookie = guard::cookie_token(headers);
        if let Err(denial) = self.access.check(headers, uri, Requirement::Full, cookie) {
            return refusal_response(denial.refusal);
        }
        let scope = Scope {
            status: self.status.clone(),
            actions: Arc::clone(&self.actions),
            csrf: self.csrf_token.clone(),
        };
        self.scoped(&scope, method, path, request).await
    }

    /// A page request whose caller is known, acting on `scope`.
    async fn scoped(
        &self,
        scope: &Scope,
        method: Method,
        path: &str,
        request: Request<Incoming>,
    ) -> Response<Body> {
        let query = request.uri().query().map(str::to_owned);
        let query = query.as_deref();
        match (method, path) {
            (Method::GET | Method::HEAD, "/connections") => Self::connections(scope, query),
            (Method::GET | Method::HEAD, "/connections/disconnect") => {
                Self::confirm_disconnect(scope, query)
            }
            (Method::POST, "/connections/disconnect") => Self::disconnect(scope, request).await,
            (Method::GET, "/connections/add") => Self::add_account(scope, query).await,
            (Method::GET | Method::HEAD, "/callback") => self.callback(scope, query).await,
            (_, "/connections/disconnect") => method_not_allowed("GET, POST"),
            _ => method_not_allowed("GET"),
        }
    }

    fn token_login(&self, candidate: &str) -> Response<Body> {
        if !self.access.token_matches(candidate) {
            return refusal_response(Refusal::Token);
        }
        let mut response = redirect("/connections");
        if let Ok(value) = guard::login_cookie(candidate.trim()).parse() {
            response.headers_mut().insert(SET_COOKIE, value);
        }
        response
    }

    /// The RFC 9728 protected-resource document in JWT mode, at the well-known path and under
    /// the MCP path's suffix; 404 in the other modes. Public: OAuth clients read it before
    /// they have a token.
    fn resource_metadata(&self, path: &str) -> Response<Body> {
        let verifier = self
            .multi
            .as_ref()
            .and_then(|front| match &**front.authenticator() {
                toolgate_proxy::identity::Authenticator::Jwt(verifier) => Some(verifier),
                _ => None,
            });
        let suffix = &path[METADATA_PATH.len()..];
        match verifier {
            Some(verifier) if suffix.is_empty() || suffix == self.gateway.mcp_path() => response(
                StatusCode::OK,
                "application/json",
                verifier.metadata().to_string(),
            ),
            _ => response(
                StatusCode::NOT_FOUND,
                "text/plain; charset=utf-8",
                "not found\n",
            ),
        }
    }

    fn readyz(&self) -> Response<Body> {
        let view = self.status.borrow().clone();
        let gate = if !view.ready {
            "starting"
        } else if view.gate_open {
            "open"
        } else {
            "closed"
        };
        let body = serde_json::json!({
            "ready": view.ready,
            "mode": view.mode,
            "gate": gate,
            "reason": view.not_ready_reason,
            "toolkits": view
                .toolkits
                .iter()
                .map(|toolkit| serde_json::json!({"slug": toolkit.slug, "status": toolkit.status}))
                .collect::<Vec<_>>(),
            "last_error": view.last_error,
        });
        let status = if view.ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        response(status, "application/json", body.to_string())
    }

    fn connections(scope: &Scope, query: Option<&str>) -> Response<Body> {
        // A person is looking: links that expired are made again (the page refreshes itself).
        scope.actions.want_links();
        let view = scope.status.borrow().clone();
        // Notices come from a fixed set keyed by a known slug, so the query cannot put
        // arbitrary text on the page.
        let notice = query_param(query, "disconnected")
            .and_then(|slug| view.toolkit(&slug).map(|toolkit| toolkit.name.clone()))
            .map(|name| format!("{name} was disconnected."));
        html(StatusCode::OK, pages::connections(&view, notice.as_deref()))
    }

    fn confirm_disconnect(scope: &Scope, query: Option<&str>) -> Response<Body> {
        let view = scope.status.borrow().clone();
        let slug = query_param(query, "toolkit").unwrap_or_default();
        let account = query_param(query, "account").filter(|id| {
            view.toolkit(&slug)
                .is_some_and(|toolkit| toolkit.accounts.iter().any(|known| known.id == *id))
        });
        match view.toolkit(&slug) {
            Some(toolkit) if toolkit.account_id.is_some() || account.is_some() => html(
                StatusCode::OK,
                pages::confirm_disconnect(toolkit, account.as_deref(), &scope.csrf),
            ),
            Some(_) => html(
                StatusCode::CONFLICT,
                pages::error(
                    "Not connected",
                    "This toolkit has no connected account to remove.",
                ),
            ),
            None => html(
                StatusCode::NOT_FOUND,
                pages::error(
                    "Unknown toolkit",
                    "This gateway does not require that toolkit.",
                ),
            ),
        }
    }

    async fn disconnect(scope: &Scope, request: Request<Incoming>) -> Response<Body> {
        let form_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        if !form_type {
            return html(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                pages::error("Bad request", "Expected a form submission."),
            );
        }
        let body = match Limited::new(request.into_body(), FORM_LIMIT)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(_) => {
                return html(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    pages::error("Bad request", "The form is too large."),
                );
            }
        };
        let form: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
        let field = |name: &str| {
            form.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
                .unwrap_or_default()
        };
        let csrf = field("csrf");
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            csrf.as_bytes(),
            scope.csrf.as_bytes(),
        )) {
            return html(
                StatusCode::FORBIDDEN,
                pages::error(
                    "Forbidden",
                    "The form expired or did not come from this gateway. Go back and try again.",
                ),
            );
        }
        let slug = field("toolkit");
        let known = scope.status.borrow().toolkit(&slug).is_some();
        if !known {
            return html(
                StatusCode::NOT_FOUND,
                pages::error(
                    "Unknown toolkit",
                    "This gateway does not require that toolkit.",
                ),
            );
        }
        let account = Some(field("account")).filter(|id| !id.is_empty());
        match scope.actions.disconnect(slug.clone(), account).await {
            Ok(()) => redirect(&format!(
                "/connections?disconnected={}",
                form_urlencoded::byte_serialize(slug.as_bytes()).collect::<String>()
            )),
            Err(message) => html(
                StatusCode::BAD_GATEWAY,
                pages::error("Disconnect failed", &format!("Composio said: {message}")),
            ),
        }
    }

    /// "Add another account": a fresh Connect Link for the toolkit, then off to it.
    async fn add_account(scope: &Scope, query: Option<&str>) -> Response<Body> {
        let slug = query_param(query, "toolkit").unwrap_or_default();
        if scope.status.borrow().toolkit(&slug).is_none() {
            return html(
                StatusCode::NOT_FOUND,
                pages::error(
                    "Unknown toolkit",
                    "This gateway does not require that toolkit.",
                ),
            );
        }
        match scope.actions.add_account(slug).await {
            Ok(link) if link.starts_with("http://") || link.starts_with("https://") => {
                redirect(&link)
            }
            Ok(_) => html(
                StatusCode::BAD_GATEWAY,
                pages::error("No link", "Composio returned an unusable link."),
            ),
            Err(message) => html(
                StatusCode::CONFLICT,
                pages::error("Cannot add an account", &message),
            ),
        }
    }

    async fn callback(&self, scope: &Scope, query: Option<&str>) -> Response<Body> {
        let reported = query_param(query, "status").unwrap_or_default();
        let account = query_param(query, "connected_account_id");
        // Only a hint: the tracker re-checks with Composio, which alone decides.
        scope.actions.hint();
        if reported != "success" {
            let name = account.as_deref().and_then(|id| {
                scope
                    .status
                    .borrow()
                    .toolkits
                    .iter()
                    .find(|toolkit| toolkit.account_id.as_deref() == Some(id))
                    .map(|toolkit| toolkit.name.clone())
            });
            return html(
                StatusCode::OK,
                pages::callback(&CallbackOutcome::Failed { name }, &scope.status.borrow()),
            );
        }
        let outcome = match account {
            Some(id) => self.wait_for_confirmation(scope, &id).await,
            None => CallbackOutcome::Unconfirmed,
        };
        html(
            StatusCode::OK,
            pages::callback(&outcome, &scope.status.borrow()),
        )
    }

    /// Waits (bounded) until the tracker shows `account_id` connected.
    async fn wait_for_confirmation(&self, scope: &Scope, account_id: &str) -> CallbackOutcome {
        let mut status = scope.status.clone();
        let confirmed = |view: &StatusView| {
            view.toolkits
                .iter()
                .find(|toolkit| {
                    toolkit.account_id.as_deref() == Some(account_id)
                        && toolkit.status == ToolkitStatus::Connected
                })
                .map(|toolkit| toolkit.name.clone())
        };
        let wait = async {
            loop {
                if let Some(name) = confirmed(&status.borrow_and_update()) {
                    return Some(name);
                }
                if status.changed().await.is_err() {
                    return None;
                }
            }
        };
        match tokio::time::timeout(self.callback_wait, wait).await {
            Ok(Some(name)) => CallbackOutcome::Connected { name },
            _ => CallbackOutcome::Unconfirmed,
        }
    }
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = response(
        StatusCode::METHOD_NOT_ALLOWED,
        "text/plain; charset=utf-8",
        "method not allowed\n",
    );
    response
        .headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    response
}

/// Serves `app` on `listener` within `limits` until `shutdown` resolves, then stops accepting
/// and lets in-flight requests finish for up to `drain` (the proxy library's server loop).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    limits: toolgate_proxy::limits::ServerLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let handler = move |request: Request<Incoming>| Arc::clone(&app).handle(request);
    toolgate_proxy::server::serve_with(listener, handler, limits, drain, shutdown).await;
}

#[cfg(test)]
mod tests;
