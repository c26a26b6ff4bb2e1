//! Request routing: matches path segments and methods to the REST API, the MCP URLs, the link
//! pages and the `/_sandbox/` control plane; applies injected faults, logs requests and sets
//! `x-request-id` on every answer.
//!
//! Order of checks for the REST API: unknown path → 404, wrong method → 405, missing or
//! unknown `x-api-key` → 401, then the endpoint's own validation (400/404).

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::control::{Control, FaultSpec, RecordedRequest};
use crate::http::{
    ApiError, html_response, json_response, parse_json_object, query_map, read_body, response,
    see_other,
};
use crate::mcp::{McpEndpoint, McpWorld, ResponseBody};
use crate::store::{ProjectId, Store};
use crate::{SandboxConfig, catalog, logos, pages};

/// The error a request handler returns to make hyper drop the connection without an answer
/// (an injected fault with status 0).
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
pub(crate) struct InjectedDrop;

/// Everything a request needs: state, control plane, MCP endpoint and configuration.
pub(crate) struct App {
    pub(crate) store: Arc<Store>,
    pub(crate) control: Control,
    mcp: McpEndpoint,
    api_keys: Vec<String>,
    public_base_url: Option<String>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for App {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // API keys are deliberately left out.
        formatter
            .debug_struct("App")
            .field("api_keys", &self.api_keys.len())
            .field("public_base_url", &self.public_base_url)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Builds the app for a listener bound to `local_addr`; cancelling `shutdown` ends every
    /// MCP stream.
    pub(crate) fn new(
        local_addr: SocketAddr,
        config: SandboxConfig,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let public_base_url = config
            .public_base_url
            .map(|url| url.trim_end_matches('/').to_owned());
        let default_base_url = public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{local_addr}"));
        let store = Arc::new(Store::new(config.link_ttl, default_base_url.clone()));
        for project in 0..config.api_keys.len() {
            for (toolkit, name) in &config.auth_configs {
                if let Err(error) =
                    store.create_auth_config(ProjectId(project), toolkit, name, &default_base_url)
                {
                    tracing::warn!(%toolkit, %name, message = %error.message, "cannot create the auth config");
                }
            }
        }
        let world: Arc<dyn McpWorld> = store.clone();
        let public_host = public_base_url
            .as_deref()
            .and_then(|base| url::Url::parse(base).ok())
            .and_then(|base| base.host_str().map(str::to_owned));
        let mcp = McpEndpoint::new(world, shutdown).with_allowed_hosts(public_host);
        Arc::new(Self {
            store,
            control: Control::default(),
            mcp,
            api_keys: config.api_keys,
            public_base_url,
            local_addr,
        })
    }

    /// The project of a request's `x-api-key`.
    fn project(&self, headers: &HeaderMap) -> Option<ProjectId> {
        let key = headers.get("x-api-key")?.to_str().ok()?;
        self.api_keys
            .iter()
            .position(|known| known == key)
            .map(ProjectId)
    }

    /// The base URL links and MCP URLs use: the configured public URL, else the Host the
    /// request came in on (so a client sees its own origin back), else the bound address.
    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(public) = &self.public_base_url {
            return public.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .filter(|host| {
                !host.is_empty()
                    && host.len() < 256
                    && host
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || b".-:[]_".contains(&byte))
            });
        match host {
            Some(host) => format!("http://{host}"),
            None => format!("http://{}", self.local_addr),
        }
    }
}

/// Handles one request (see the module docs).
pub(crate) async fn handle(
    app: Arc<App>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, InjectedDrop> {
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    if path != "/_sandbox/requests" {
        app.control.record(RecordedRequest {
            method: method.to_string(),
            path: request
                .uri()
                .path_and_query()
                .map_or_else(|| path.clone(), |path| path.as_str().to_owned()),
            headers: header_map(request.headers()),
            request_id: request_id.clone(),
        });
    }
    let mut answer = match fault(&app, &path, &request_id).await? {
        Some(answer) => answer,
        None => route(&app, request, &path, &request_id).await,
    };
    tracing::debug!(%method, %path, status = answer.status().as_u16(), %request_id, "sandbox request");
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        answer.headers_mut().insert("x-request-id", value);
    }
    Ok(answer)
}

fn header_map(headers: &HeaderMap) -> std::collections::BTreeMap<String, String> {
    let mut map = std::collections::BTreeMap::<String, String>::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        map.entry(name.as_str().to_owned())
            .and_modify(|existing| {
                existing.push_str(", ");
                existing.push_str(&value);
            })
            .or_insert(value);
    }
    map
}

/// Applies the first matching injected fault: delay, then answer, drop, or fall through.
async fn fault(
    app: &App,
    path: &str,
    request_id: &str,
) -> Result<Option<Response<ResponseBody>>, InjectedDrop> {
    if path.starts_with("/_sandbox/") {
        return Ok(None);
    }
    let Some(action) = app.control.take_fault(path) else {
        return Ok(None);
    };
    if !action.delay.is_zero() {
        tokio::time::sleep(action.delay).await;
    }
    let status = match action.status {
        None => return Ok(None),
        Some(0) => return Err(InjectedDrop),
        Some(code) => StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
    };
    let mut answer = if status == StatusCode::TOO_MANY_REQUESTS {
        // Composio's documented 429 body is not the error envelope.
        let mut answer = json_response(
            status,
            &json!({"message": "Rate limit exceeded. Limit: 2000 requests per 1 minutes"}),
        );
        let headers = answer.headers_mut();
        headers.insert("x-ratelimit", HeaderValue::from_static("2000"));
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        headers.insert("x-ratelimit-window-size", HeaderValue::from_static("60s"));
        answer
    } else {
        ApiError::new(
            status,
            format!(
                "Injected fault: the sandbox answered {} to this request",
                status.as_u16()
            ),
        )
        .into_response(request_id)
    };
    if let Some(seconds) = action.retry_after {
        answer
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    Ok(Some(answer))
}

async fn route(
    app: &App,
    request: Request<Incoming>,
    path: &str,
    request_id: &str,
) -> Response<ResponseBody> {
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let result = match segments.as_slice() {
        ["api", "v3.1" | "v3", rest @ ..] => api(app, request, rest).await,
        ["tool_router", session_id, "mcp"] => mcp(app, request, session_id).await,
        ["link", token] => link_page(app, &request, token),
        ["_sandbox", rest @ ..] => control(app, request, rest).await,
        _ => Err(ApiError::not_found(format!(
            "Cannot {} {path}",
            request.method()
        ))),
    };
    result.unwrap_or_else(|error| error.into_response(request_id))
}

/// 405 with an `Allow` header when `method` is not one of `allowed`.
fn allow(method: &Method, allowed: &[Method]) -> Result<(), ApiError> {
    if allowed.contains(method) {
        Ok(())
    } else {
        let names = allowed
            .iter()
            .map(Method::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        let mut error = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {method} is not allowed here; allowed: {names}"),
        );
        error.allow = Some(names);
        Err(error)
    }
}

async fn api(
    app: &App,
    request: Request<Incoming>,
    rest: &[&str],
) -> Result<Response<ResponseBody>, ApiError> {
    use Method as M;
    let allowed: &[Method] = match rest {
        ["tool_router", "session"] => &[M::POST],
        ["tool_router", "session", _] => &[M::GET, M::PATCH, M::DELETE],
        ["tool_router", "session", _, "toolkits"] => &[M::GET],
        ["tool_router", "session", _, "link"] => &[M::POST],
        ["connected_accounts"] => &[M::GET],
        ["auth_configs"] | ["auth_configs", _] => &[M::GET],
        ["connected_accounts", _] => &[M::GET, M::DELETE],
        _ => {
            return Err(ApiError::not_found(format!(
                "Cannot {} {}",
                request.method(),
                request.uri().path()
            )));
        }
    };
    allow(request.method(), allowed)?;
    let project = app
        .project(request.headers())
        .ok_or_else(ApiError::unauthorized)?;
    let base_url = app.base_url(request.headers());
    let query = query_map(request.uri().query());
    let store = &app.store;
    let method = request.method().clone();
    let (status, body) = match (rest, method) {
        (["tool_router", "session"], _) => {
            let body = parse_json_object(&read_body(request.into_body()).await?, false)?;
            (
                StatusCode::CREATED,
                store.create_session(project, body, &base_url)?,
            )
        }
        (["tool_router", "session", id], M::GET) => {
            (StatusCode::OK, store.get_session(project, id, &base_url)?)
        }
        (["tool_router", "session", id], M::PATCH) => {
            let body = parse_json_object(&read_body(request.into_body()).await?, false)?;
            (
                StatusCode::OK,
                store.patch_session(project, id, body, &base_url)?,
            )
        }
        (["tool_router", "session", id], _) => {
            let body = store.delete_session(project, id)?;
            app.mcp.close_session(id);
            (StatusCode::OK, body)
        }
        (["tool_router", "session", id, "toolkits"], _) => (
            StatusCode::OK,
            store.list_toolkits(project, id, &query, &base_url)?,
        ),
        (["tool_router", "session", id, "link"], _) => {
            let body = parse_json_object(&read_body(request.into_body()).await?, false)?;
            (
                StatusCode::CREATED,
                store.create_link(project, id, &body, &base_url)?,
            )
        }
        (["connected_accounts"], _) => (StatusCode::OK, store.list_accounts(project, &query)?),
        (["auth_configs"], _) => (
            StatusCode::OK,
            store.list_auth_configs(project, &query, &base_url)?,
        ),
        (["auth_configs", id], _) => (
            StatusCode::OK,
            store.get_auth_config(project, id, &base_url)?,
        ),
        (["connected_accounts", id], M::GET) => (StatusCode::OK, store.get_account(project, id)?),
        (["connected_accounts", id], _) => {
            let revoke = match query.get("revoke_on_delete").map(String::as_str) {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => {
                    return Err(ApiError::validation(
                        "Error in query.revoke_on_delete: Expected boolean",
                    ));
                }
            };
            (StatusCode::OK, store.delete_account(project, id, revoke)?)
        }
        _ => return Err(ApiError::not_found("Not found")),
    };
    Ok(json_response(status, &body))
}

/// The session's MCP URL: 404 for an unknown session, 401 unless the `x-api-key` is the key
/// that created it, then B's endpoint answers with MCP's own statuses.
async fn mcp(
    app: &App,
    request: Request<Incoming>,
    session_id: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    let owner = app.store.session_project(session_id).ok_or_else(|| {
        ApiError::not_found(format!("Tool router session {session_id} not found"))
    })?;
    if app.project(request.headers()) != Some(owner) {
        return Err(ApiError::unauthorized());
    }
    let ending = request.method() == Method::DELETE;
    let mut answer = app.mcp.handle(session_id, request).await;
    // Composio's MCP server accepts a session DELETE with 202 (the Python SDK logs
    // "Session termination failed: 202" and carries on; other clients ignore the status).
    if ending && answer.status().is_success() {
        *answer.status_mut() = StatusCode::ACCEPTED;
    }
    Ok(answer)
}

fn link_page(
    app: &App,
    request: &Request<Incoming>,
    token: &str,
) -> Result<Response<ResponseBody>, ApiError> {
    allow(request.method(), &[Method::GET])?;
    Ok(match app.store.link_page(token) {
        Some(page) => html_response(
            StatusCode::OK,
            pages::link_page(&page, &app.base_url(request.headers())),
        ),
        None => html_response(StatusCode::NOT_FOUND, pages::unknown_link_page()),
    })
}

/// The test backdoor under `/_sandbox/` (no API key: it is not part of Composio's API).
async fn control(
    app: &App,
    request: Request<Incoming>,
    rest: &[&str],
) -> Result<Response<ResponseBody>, ApiError> {
    use Method as M;
    let ok = || json_response(StatusCode::OK, &json!({ "ok": true }));
    match rest {
        ["links", token, verb @ ("allow" | "deny")] => {
            allow(request.method(), &[M::POST])?;
            let allowed = *verb == "allow";
            let outcome = app.store.answer_link(token, allowed)?;
            tracing::info!(account = %outcome.account_id, allowed, "connect link answered");
            match outcome.redirect {
                Some(location) => see_other(&location),
                None => Ok(html_response(
                    StatusCode::OK,
                    pages::finished_page(outcome.toolkit_name, allowed),
                )),
            }
        }
        [
            "accounts",
            account_id,
            action @ ("revoke" | "expire" | "deactivate" | "activate"),
        ] => {
            allow(request.method(), &[M::POST])?;
            let account = app.store.force_status(account_id, action)?;
            Ok(json_response(StatusCode::OK, &account))
        }
        ["auth_configs"] => {
            allow(request.method(), &[M::POST])?;
            // The control plane takes no key, except to say whose project this is for.
            let project = app.project(request.headers()).unwrap_or(ProjectId(0));
            let base_url = app.base_url(request.headers());
            let body = parse_json_object(&read_body(request.into_body()).await?, false)?;
            let field = |name: &str| {
                body.get(name)
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or_default()
            };
            let created = app.store.create_auth_config(
                project,
                field("toolkit"),
                field("name"),
                &base_url,
            )?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        ["faults"] => {
            allow(request.method(), &[M::POST, M::DELETE])?;
            if request.method() == M::DELETE {
                app.control.clear_faults();
                return Ok(ok());
            }
            let body = read_body(request.into_body()).await?;
            let spec: FaultSpec = serde_json::from_slice(&body)
                .map_err(|error| ApiError::bad_request(format!("Invalid fault: {error}")))?;
            app.control.add_fault(spec)?;
            Ok(json_response(StatusCode::CREATED, &json!({ "ok": true })))
        }
        ["requests"] => {
            allow(request.method(), &[M::GET, M::DELETE])?;
            if request.method() == M::DELETE {
                app.control.clear_requests();
                return Ok(ok());
            }
            Ok(json_response(
                StatusCode::OK,
                &json!({ "requests": app.control.requests() }),
            ))
        }
        ["logos", file] => {
            allow(request.method(), &[M::GET])?;
            let toolkit = file.strip_suffix(".svg").and_then(catalog::find);
            let toolkit = toolkit.ok_or_else(|| ApiError::not_found(format!("No logo {file}")))?;
            Ok(response(
                StatusCode::OK,
                "image/svg+xml",
                logos::svg(toolkit),
            ))
        }
        _ => Err(ApiError::not_found(format!(
            "Cannot {} /_sandbox/{}",
            request.method(),
            rest.join("/")
        ))),
    }
}
