//! The MCP server behind one tool-router session's URL: an rmcp [`ServerHandler`] whose tool
//! list is read from the session's live config on every `tools/list` (so it always mirrors
//! `tool_router_tools`), plus the sandbox-only `SANDBOX_*` helpers.
//!
//! Tool-level failures (bad arguments, unconnected toolkit, unknown app tool) are answered as
//! `isError: true` results with a readable text, as Composio's backend does, because MCP
//! clients tend to hide protocol-error messages from the model. Only a tool name the session
//! does not offer is a protocol error (-32602 "Unknown tool"), as the MCP spec prescribes.
//!
//! The `SANDBOX_*` tools are NOT part of Composio; they exist so proxies can be tested and
//! benchmarked against this upstream: `SANDBOX_ECHO` (fast), `SANDBOX_SLOW_OPERATION`
//! (progress notifications), `SANDBOX_LARGE_RESULT` (big payloads).

use std::{borrow::Cow, collections::BTreeSet, sync::Arc, time::Duration};

use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    handler::server::common::schema_for_input,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
        JsonObject, ListToolsResult, PaginatedRequestParams, ProgressNotificationParam,
        ServerCapabilities, ServerConfig, Tool, ToolAnnotations,
    },
    service::RequestContext,
};
use schemars::JsonSchema;
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Map, Value, json};

use super::{
    McpWorld, SessionView,
    catalog::{self, AppTool},
};

/// Meta tool: find app tools for a use case.
pub(crate) const SEARCH_TOOLS: &str = "COMPOSIO_SEARCH_TOOLS";
/// Meta tool: input schemas of app tools.
pub(crate) const GET_TOOL_SCHEMAS: &str = "COMPOSIO_GET_TOOL_SCHEMAS";
/// Meta tool: run up to 50 app tools concurrently.
pub(crate) const MULTI_EXECUTE_TOOL: &str = "COMPOSIO_MULTI_EXECUTE_TOOL";
/// Meta tool: connection status and Connect Links (only while in-chat auth is on).
pub(crate) const MANAGE_CONNECTIONS: &str = "COMPOSIO_MANAGE_CONNECTIONS";
/// Meta tool: wait until toolkits are connected (only when the session enables it).
pub(crate) const WAIT_FOR_CONNECTIONS: &str = "COMPOSIO_WAIT_FOR_CONNECTIONS";
/// Sandbox-only: answers `Echo: <message>` at once (the benchmark's fast tool).
pub(crate) const SANDBOX_ECHO: &str = "SANDBOX_ECHO";
/// Sandbox-only: sends one progress notification per step, then a result.
pub(crate) const SANDBOX_SLOW_OPERATION: &str = "SANDBOX_SLOW_OPERATION";
/// Sandbox-only: a text result of the requested size.
pub(crate) const SANDBOX_LARGE_RESULT: &str = "SANDBOX_LARGE_RESULT";

/// The sandbox-only tools every session offers in addition to its `tool_router_tools`.
pub(crate) const SANDBOX_TOOLS: [&str; 3] =
    [SANDBOX_ECHO, SANDBOX_SLOW_OPERATION, SANDBOX_LARGE_RESULT];

/// `COMPOSIO_MULTI_EXECUTE_TOOL` accepts at most this many entries, like the real backend.
/// The error slug Composio puts on a multi-execute entry whose toolkit has no ACTIVE account.
pub(crate) const NO_ACTIVE_CONNECTION: &str = "ToolRouterV2_NoActiveConnection";
const MAX_MULTI_EXECUTE: usize = 50;
/// Upper bound of `SANDBOX_LARGE_RESULT` (8 MiB), below rmcp's 16 MiB client limits.
pub(crate) const MAX_LARGE_RESULT_KIB: u64 = 8 * 1024;
/// Upper bounds of `SANDBOX_SLOW_OPERATION`, so one call cannot hold a stream for hours.
const MAX_SLOW_STEPS: u32 = 1000;
const MAX_SLOW_INTERVAL_MS: u64 = 60_000;
/// `COMPOSIO_WAIT_FOR_CONNECTIONS` waits this long by default, and at most `MAX_WAIT_SECONDS`.
const DEFAULT_WAIT_SECONDS: u64 = 60;
const MAX_WAIT_SECONDS: u64 = 600;
/// How often `COMPOSIO_WAIT_FOR_CONNECTIONS` re-reads connection state (the world offers no
/// change notification; the SDKs' own wait polls every second).
const WAIT_POLL_INTERVAL: Duration = Duration::from_millis(200);

// === argument shapes (as Composio's meta tools take them) ===

#[derive(Debug, Deserialize, JsonSchema)]
struct SearchToolsArgs {
    /// One entry per thing the user wants to do.
    queries: Vec<SearchQuery>,
    /// `{"generate_id": true}` to start a search session, or `{"id": "..."}` to continue one.
    #[serde(default)]
    session: Option<SearchSession>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct SearchQuery {
    /// What the user wants to achieve, in plain words (e.g. "send an email").
    use_case: String,
    /// Facts already known that narrow the search (free text).
    #[serde(default)]
    known_fields: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct SearchSession {
    /// Ask for a new search-session id.
    #[serde(default)]
    generate_id: Option<bool>,
    /// An existing search-session id.
    #[serde(default)]
    id: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct GetToolSchemasArgs {
    /// App tool slugs, e.g. `GMAIL_SEND_EMAIL`.
    tool_slugs: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[allow(
    dead_code,
    reason = "the planning fields are part of the real tool's schema; the sandbox accepts and ignores them"
)]
struct MultiExecuteArgs {
    /// The app tools to run (1 to 50), executed concurrently.
    tools: Vec<ToolInvocation>,
    /// Why the model runs these tools (recorded, not used).
    #[serde(default)]
    thought: Option<String>,
    /// The plan step being executed (recorded, not used).
    #[serde(default)]
    current_step: Option<String>,
    /// The plan step that follows (recorded, not used).
    #[serde(default)]
    next_step: Option<String>,
    /// Composio offloads results to its workbench when true; the sandbox has none and
    /// always answers inline.
    #[serde(default)]
    sync_response_to_workbench: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ToolInvocation {
    /// The app tool to run, e.g. `GMAIL_SEND_EMAIL`.
    tool_slug: String,
    /// Its arguments, as described by `COMPOSIO_GET_TOOL_SCHEMAS`.
    #[serde(default)]
    arguments: Map<String, Value>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct ToolkitsArgs {
    /// Toolkit slugs, e.g. `gmail`.
    toolkits: Vec<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct WaitForConnectionsArgs {
    /// Toolkit slugs to wait for.
    toolkits: Vec<String>,
    /// How long to wait at most (default 60, at most 600).
    #[serde(default)]
    timeout_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct EchoArgs {
    /// Text to send back.
    message: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct SlowOperationArgs {
    /// Number of steps; one progress notification per step (at most 1000).
    steps: u32,
    /// Pause before each step in milliseconds (at most 60000).
    interval_ms: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct LargeResultArgs {
    /// Size of the text result in KiB (1 to 8192).
    kilobytes: u64,
}

/// The MCP server of one tool-router session. Cheap to clone; rmcp builds one per MCP
/// session (and per request for stateless 2026-07-28 clients).
#[derive(Clone)]
pub(crate) struct SessionTools {
    world: Arc<dyn McpWorld>,
    session_id: Arc<str>,
}

// === impl SessionTools ===

impl SessionTools {
    /// The server for `session_id`, reading live state from `world`.
    pub(crate) fn new(world: Arc<dyn McpWorld>, session_id: Arc<str>) -> Self {
        Self { world, session_id }
    }

    /// The session's current view, or a tool error saying it is gone.
    fn view(&self) -> Result<SessionView, CallToolResult> {
        self.world.session(&self.session_id).ok_or_else(|| {
            error_text(format!(
                "Tool router session {} does not exist (it was deleted)",
                self.session_id
            ))
        })
    }

    /// App tools the session can see: catalog tools whose toolkit is usable.
    fn visible_app_tools(&self, view: &SessionView) -> Vec<&'static AppTool> {
        let known = self.world.toolkits();
        catalog::APP_TOOLS
            .iter()
            .filter(|tool| usable_toolkit(view, &known, tool.toolkit).is_ok())
            .collect()
    }

    fn search_tools(&self, view: &SessionView, args: SearchToolsArgs) -> CallToolResult {
        if args.queries.is_empty() {
            return error_text(format!(
                "{SEARCH_TOOLS}: 'queries' must contain at least one query"
            ));
        }
        if let Some(blank) = args
            .queries
            .iter()
            .position(|q| q.use_case.trim().is_empty())
        {
            return error_text(format!(
                "{SEARCH_TOOLS}: queries[{blank}].use_case must not be empty"
            ));
        }
        let visible = self.visible_app_tools(view);
        let mut toolkits_seen = BTreeSet::new();
        let results: Vec<Value> = args
            .queries
            .iter()
            .map(|query| {
                let mut query_words = catalog::words(&query.use_case);
                if let Some(known) = &query.known_fields {
                    query_words.extend(catalog::words(known));
                }
                let mut ranked: Vec<(usize, &AppTool)> = visible
                    .iter()
                    .map(|tool| (catalog::relevance(tool, &query_words), *tool))
                    .filter(|(score, _)| *score > 0)
                    .collect();
                ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.slug.cmp(b.1.slug)));
                let tools: Vec<Value> = ranked
                    .iter()
                    .take(5)
                    .map(|(_, tool)| {
                        toolkits_seen.insert(tool.toolkit);
                        json!({
                            "tool_slug": tool.slug,
                            "toolkit": tool.toolkit,
                            "description": tool.description,
                            "connected": self.world.is_connected(&self.session_id, tool.toolkit),
                        })
                    })
                    .collect();
                json!({"use_case": query.use_case, "tools": tools})
            })
            .collect();
        let statuses: Vec<Value> = toolkits_seen
            .iter()
            .map(|toolkit| {
                let connected = self.world.is_connected(&self.session_id, toolkit);
                json!({
                    "toolkit": toolkit,
                    "has_active_connection": connected,
                    "status_message": if connected {
                        format!("{toolkit} is connected")
                    } else {
                        format!("No active connection for {toolkit}; the user must connect it before its tools can run")
                    },
                })
            })
            .collect();
        let search_session = match args.session {
            Some(SearchSession { id: Some(id), .. }) => Some(id),
            Some(SearchSession {
                generate_id: Some(true),
                ..
            }) => Some(format!("srch_{}", uuid::Uuid::new_v4().simple())),
            _ => None,
        };
        ok_json(json!({
            "successful": true,
            "data": {
                "results": results,
                "toolkit_connection_statuses": statuses,
                "session": search_session.map(|id| json!({"id": id})),
            },
            "error": null,
        }))
    }

    fn get_tool_schemas(&self, view: &SessionView, args: GetToolSchemasArgs) -> CallToolResult {
        if args.tool_slugs.is_empty() {
            return error_text(format!(
                "{GET_TOOL_SCHEMAS}: 'tool_slugs' must contain at least one slug"
            ));
        }
        let visible = self.visible_app_tools(view);
        let mut schemas = Map::new();
        let mut not_found = Vec::new();
        for slug in &args.tool_slugs {
            match visible
                .iter()
                .find(|tool| tool.slug.eq_ignore_ascii_case(slug))
            {
                Some(tool) => {
                    schemas.insert(
                        tool.slug.to_owned(),
                        json!({
                            "tool_slug": tool.slug,
                            "toolkit": tool.toolkit,
                            "description": tool.description,
                            "input_schema": tool.input_schema(),
                        }),
                    );
                }
                None => not_found.push(slug.clone()),
            }
        }
        if schemas.is_empty() {
            return error_text(format!(
                "{GET_TOOL_SCHEMAS}: no such tool available in this session: {}",
                not_found.join(", ")
            ));
        }
        ok_json(json!({
            "successful": true,
            "data": {"tool_schemas": schemas, "not_found": not_found},
            "error": null,
        }))
    }

    /// One multi-execute entry: `Ok(data)` or `Err(message)`; a missing connection is the
    /// real backend's `ToolRouterV2_NoActiveConnection` error.
    fn execute_one(
        &self,
        view: &SessionView,
        known: &[(String, String)],
        invocation: &ToolInvocation,
    ) -> Result<Value, String> {
        let tool = catalog::find(&invocation.tool_slug)
            .ok_or_else(|| format!("Tool {} not found", invocation.tool_slug))?;
        usable_toolkit(view, known, tool.toolkit)?;
        tool.check_arguments(&invocation.arguments)
            .map_err(|reason| format!("Invalid arguments: {reason}"))?;
        if !self.world.is_connected(&self.session_id, tool.toolkit) {
            let how = if view
                .tool_router_tools
                .iter()
                .any(|name| name == MANAGE_CONNECTIONS)
            {
                format!(
                    "call {MANAGE_CONNECTIONS} with toolkits [\"{}\"] to get a Connect Link",
                    tool.toolkit
                )
            } else {
                "the user must connect it through the application's Connect Link".to_owned()
            };
            return Err(format!(
                "{NO_ACTIVE_CONNECTION}: No active connection for toolkit {} (user {}); {how}",
                tool.toolkit, view.user_id
            ));
        }
        Ok(tool.run(&view.user_id, &invocation.arguments))
    }

    async fn multi_execute(&self, view: &SessionView, args: MultiExecuteArgs) -> CallToolResult {
        if args.tools.is_empty() || args.tools.len() > MAX_MULTI_EXECUTE {
            return error_text(format!(
                "{MULTI_EXECUTE_TOOL}: 'tools' must contain between 1 and {MAX_MULTI_EXECUTE} entries (got {})",
                args.tools.len()
            ));
        }
        // Entries are independent, so they run concurrently as the real backend does; the
        // answer keeps the request's order.
        let known = self.world.toolkits();
        let known = known.as_slice();
        let outcomes = futures_util::future::join_all(
            args.tools
                .iter()
                .map(|invocation| async move { self.execute_one(view, known, invocation) }),
        )
        .await;
        let total = outcomes.len();
        let successes = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
        let results: Vec<Value> = args
            .tools
            .iter()
            .zip(outcomes)
            .enumerate()
            .map(|(index, (invocation, outcome))| {
                let response = match outcome {
                    Ok(data) => json!({"successful": true, "data": data, "error": null}),
                    Err(error) => json!({"successful": false, "data": null, "error": error}),
                };
                json!({"index": index, "tool_slug": invocation.tool_slug, "response": response})
            })
            .collect();
        let body = json!({
            "successful": successes == total,
            "data": {
                "results": results,
                "total_count": total,
                "success_count": successes,
                "error_count": total - successes,
            },
            "error": (successes < total).then(|| format!("{} of {total} tool executions failed", total - successes)),
        });
        // The call as a whole failed only when nothing ran; partial failures are reported
        // per entry, so a model can still use the results that worked.
        json_result(&body, successes == 0)
    }

    fn manage_connections(&self, view: &SessionView, args: ToolkitsArgs) -> CallToolResult {
        if args.toolkits.is_empty() {
            return error_text(format!(
                "{MANAGE_CONNECTIONS}: 'toolkits' must contain at least one toolkit"
            ));
        }
        let known = self.world.toolkits();
        let mut failures = 0;
        let entries: Vec<Value> = args
            .toolkits
            .iter()
            .map(|raw| {
                let toolkit = raw.to_lowercase();
                let entry = match usable_toolkit(view, &known, &toolkit) {
                    Err(error) => Err(error),
                    Ok(()) if self.world.is_connected(&self.session_id, &toolkit) => Ok(json!({
                        "toolkit": toolkit,
                        "status": "ACTIVE",
                        "has_active_connection": true,
                        "message": format!("{toolkit} is already connected"),
                    })),
                    Ok(()) => self
                        .world
                        .connect_link(&self.session_id, &toolkit)
                        .map(|redirect_url| {
                            json!({
                                "toolkit": toolkit,
                                "status": "INITIATED",
                                "has_active_connection": false,
                                "redirect_url": redirect_url,
                                "message": format!("Ask the user to open the link to connect {toolkit}"),
                            })
                        }),
                };
                entry.unwrap_or_else(|error| {
                    failures += 1;
                    json!({"toolkit": toolkit, "status": "ERROR", "has_active_connection": false, "error": error})
                })
            })
            .collect();
        let all_failed = failures == entries.len();
        json_result(
            &json!({
                "successful": failures == 0,
                "data": {"results": entries},
                "error": (failures > 0).then(|| format!("{failures} toolkit(s) could not be handled")),
            }),
            all_failed,
        )
    }

    async fn wait_for_connections(
        &self,
        view: &SessionView,
        args: WaitForConnectionsArgs,
        cancelled: &tokio_util::sync::CancellationToken,
    ) -> CallToolResult {
        if args.toolkits.is_empty() {
            return error_text(format!(
                "{WAIT_FOR_CONNECTIONS}: 'toolkits' must contain at least one toolkit"
            ));
        }
        let toolkits: Vec<String> = args.toolkits.iter().map(|t| t.to_lowercase()).collect();
        let known = self.world.toolkits();
        for toolkit in &toolkits {
            if let Err(error) = usable_toolkit(view, &known, toolkit) {
                return error_text(format!("{WAIT_FOR_CONNECTIONS}: {error}"));
            }
        }
        let seconds = args
            .timeout_seconds
            .unwrap_or(DEFAULT_WAIT_SECONDS)
            .min(MAX_WAIT_SECONDS);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        loop {
            let pending: Vec<&String> = toolkits
                .iter()
                .filter(|toolkit| !self.world.is_connected(&self.session_id, toolkit))
                .collect();
            if pending.is_empty() {
                return ok_json(json!({
                    "successful": true,
                    "data": {"connected": toolkits},
                    "error": null,
                }));
            }
            if tokio::time::Instant::now() >= deadline {
                let names: Vec<&str> = pending.iter().map(|s| s.as_str()).collect();
                return error_text(format!(
                    "Timed out after {seconds}s waiting for connections: {} still not connected",
                    names.join(", ")
                ));
            }
            tokio::select! {
                () = tokio::time::sleep(WAIT_POLL_INTERVAL) => {}
                () = cancelled.cancelled() => return error_text("Cancelled"),
            }
        }
    }

    async fn slow_operation(
        &self,
        args: SlowOperationArgs,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResult {
        if args.steps > MAX_SLOW_STEPS || args.interval_ms > MAX_SLOW_INTERVAL_MS {
            return error_text(format!(
                "{SANDBOX_SLOW_OPERATION}: steps must be at most {MAX_SLOW_STEPS} and interval_ms at most {MAX_SLOW_INTERVAL_MS}"
            ));
        }
        let token = context.meta.get_progress_token();
        let mut notified = 0_u32;
        for step in 1..=args.steps {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(args.interval_ms)) => {}
                // The client cancelled (notifications/cancelled or, on 2026-07-28, closed the
                // stream): stop working; rmcp drops the late answer.
                () = context.ct.cancelled() => return error_text("Cancelled"),
            }
            if let Some(token) = &token {
                let progress = ProgressNotificationParam::new(token.clone(), f64::from(step))
                    .with_total(f64::from(args.steps))
                    .with_message(format!("step {step} of {}", args.steps));
                if context.peer.notify_progress(progress).await.is_err() {
                    // The client is gone; nobody will read the result either.
                    return error_text("Client disconnected");
                }
                notified += 1;
            }
        }
        CallToolResult::success(vec![ContentBlock::text(format!(
            "Completed {} steps ({notified} progress notifications sent)",
            args.steps
        ))])
    }
}

impl ServerHandler for SessionTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("toolgate-sandbox", env!("CARGO_PKG_VERSION"))
                    .with_title("toolgate sandbox (Composio tool router stand-in)"),
            )
            .with_instructions(
                "Composio tool-router session emulated by the toolgate sandbox. Search app tools \
                 with COMPOSIO_SEARCH_TOOLS and run them with COMPOSIO_MULTI_EXECUTE_TOOL. \
                 SANDBOX_* tools are test helpers, not part of Composio.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let view = self.world.session(&self.session_id).ok_or_else(|| {
            ErrorData::invalid_request(
                format!("Tool router session {} does not exist", self.session_id),
                None,
            )
        })?;
        let tools = offered_tools(&view)
            .iter()
            .map(|name| tool_definition(name))
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let view = match self.view() {
            Ok(view) => view,
            Err(gone) => return Ok(gone.into()),
        };
        let name = request.name.as_ref();
        if !offered_tools(&view).iter().any(|offered| offered == name) {
            return Err(ErrorData::invalid_params(
                format!("Unknown tool: {name}"),
                None,
            ));
        }
        let arguments = request.arguments.unwrap_or_default();
        let result = match name {
            SEARCH_TOOLS => match parse_args(name, arguments) {
                Ok(args) => self.search_tools(&view, args),
                Err(error) => error,
            },
            GET_TOOL_SCHEMAS => match parse_args(name, arguments) {
                Ok(args) => self.get_tool_schemas(&view, args),
                Err(error) => error,
            },
            MULTI_EXECUTE_TOOL => match parse_args(name, arguments) {
                Ok(args) => self.multi_execute(&view, args).await,
                Err(error) => error,
            },
            MANAGE_CONNECTIONS => match parse_args(name, arguments) {
                Ok(args) => self.manage_connections(&view, args),
                Err(error) => error,
            },
            WAIT_FOR_CONNECTIONS => match parse_args(name, arguments) {
                Ok(args) => self.wait_for_connections(&view, args, &context.ct).await,
                Err(error) => error,
            },
            SANDBOX_ECHO => match parse_args::<EchoArgs>(name, arguments) {
                Ok(args) => CallToolResult::success(vec![ContentBlock::text(format!(
                    "Echo: {}",
                    args.message
                ))]),
                Err(error) => error,
            },
            SANDBOX_SLOW_OPERATION => match parse_args(name, arguments) {
                Ok(args) => self.slow_operation(args, &context).await,
                Err(error) => error,
            },
            SANDBOX_LARGE_RESULT => match parse_args::<LargeResultArgs>(name, arguments) {
                Ok(args) if (1..=MAX_LARGE_RESULT_KIB).contains(&args.kilobytes) => {
                    CallToolResult::success(vec![ContentBlock::text(large_text(args.kilobytes))])
                }
                Ok(_) => error_text(format!(
                    "{SANDBOX_LARGE_RESULT}: kilobytes must be between 1 and {MAX_LARGE_RESULT_KIB}"
                )),
                Err(error) => error,
            },
            // Listed by the session (e.g. COMPOSIO_REMOTE_WORKBENCH) but not something the
            // sandbox can do: say so plainly instead of pretending.
            other => error_text(format!(
                "{other} is enabled for this session, but the toolgate sandbox does not emulate it; \
                 use {MULTI_EXECUTE_TOOL} to run app tools"
            )),
        };
        Ok(result.into())
    }
}

/// Whether `toolkit` is in the catalog (`known`, from `McpWorld::toolkits`) and the session
/// may use it; `Err` says why not.
fn usable_toolkit(
    view: &SessionView,
    known: &[(String, String)],
    toolkit: &str,
) -> Result<(), String> {
    if !known.iter().any(|(slug, _)| slug == toolkit) {
        return Err(format!("Unknown toolkit '{toolkit}'"));
    }
    match &view.enabled_toolkits {
        Some(enabled) if !enabled.iter().any(|slug| slug == toolkit) => Err(format!(
            "Toolkit '{toolkit}' is not enabled for this session"
        )),
        _ => Ok(()),
    }
}

/// The tools the session offers right now: its `tool_router_tools` then the sandbox helpers.
pub(crate) fn offered_tools(view: &SessionView) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in view
        .tool_router_tools
        .iter()
        .map(String::as_str)
        .chain(SANDBOX_TOOLS)
    {
        if !names.iter().any(|known| known == name) {
            names.push(name.to_owned());
        }
    }
    names
}

/// The `tools/list` entry for `name`.
fn tool_definition(name: &str) -> Tool {
    let (description, schema, annotations): (&str, Arc<JsonObject>, ToolAnnotations) = match name {
        SEARCH_TOOLS => (
            "Search the app tools (Gmail, GitHub, Slack, ...) that fit one or more use cases, and \
             whether each toolkit is connected for this user. Call this first.",
            schema_of::<SearchToolsArgs>(),
            ToolAnnotations::new().read_only(true).open_world(true),
        ),
        GET_TOOL_SCHEMAS => (
            "Get the input schemas of app tools by slug, before calling them with \
             COMPOSIO_MULTI_EXECUTE_TOOL.",
            schema_of::<GetToolSchemasArgs>(),
            ToolAnnotations::new().read_only(true),
        ),
        MULTI_EXECUTE_TOOL => (
            "Run up to 50 app tools in parallel, each with its own arguments. Each result \
             reports success or an error (for example when the toolkit is not connected).",
            schema_of::<MultiExecuteArgs>(),
            ToolAnnotations::new().destructive(true).open_world(true),
        ),
        MANAGE_CONNECTIONS => (
            "Check the connection status of toolkits and get a Connect Link for each one that \
             is not connected yet.",
            schema_of::<ToolkitsArgs>(),
            ToolAnnotations::new().open_world(true),
        ),
        WAIT_FOR_CONNECTIONS => (
            "Wait until the given toolkits are connected (after the user opened their Connect \
             Links), or until the timeout.",
            schema_of::<WaitForConnectionsArgs>(),
            ToolAnnotations::new().read_only(true),
        ),
        SANDBOX_ECHO => (
            "Sandbox test helper (not part of Composio): answers 'Echo: <message>' immediately.",
            schema_of::<EchoArgs>(),
            ToolAnnotations::new().read_only(true).idempotent(true),
        ),
        SANDBOX_SLOW_OPERATION => (
            "Sandbox test helper (not part of Composio): waits interval_ms before each of \
             `steps` steps, sending a progress notification per step when the request carries \
             a progressToken, then answers.",
            schema_of::<SlowOperationArgs>(),
            ToolAnnotations::new().read_only(true).idempotent(true),
        ),
        SANDBOX_LARGE_RESULT => (
            "Sandbox test helper (not part of Composio): answers a text of exactly \
             `kilobytes` KiB (at most 8192), made of numbered 1 KiB lines.",
            schema_of::<LargeResultArgs>(),
            ToolAnnotations::new().read_only(true).idempotent(true),
        ),
        _ => (
            "Composio meta tool enabled for this session; the toolgate sandbox lists it but \
             does not emulate it.",
            Arc::new(open_object_schema()),
            ToolAnnotations::new().open_world(true),
        ),
    };
    Tool::new(Cow::Owned(name.to_owned()), description, schema).with_annotations(annotations)
}

/// The input schema of an argument type; a schema generation failure (impossible for these
/// plain structs, but rmcp reports it as a `Result`) falls back to "any object".
fn schema_of<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    schema_for_input::<T>().unwrap_or_else(|error| {
        tracing::warn!(%error, "could not generate a tool input schema");
        Arc::new(open_object_schema())
    })
}

fn open_object_schema() -> JsonObject {
    let mut schema = JsonObject::new();
    schema.insert("type".to_owned(), Value::from("object"));
    schema
}

/// Deserializes a tool's arguments, or the tool error that names the problem.
fn parse_args<T: DeserializeOwned>(tool: &str, arguments: JsonObject) -> Result<T, CallToolResult> {
    serde_json::from_value(Value::Object(arguments))
        .map_err(|error| error_text(format!("Invalid arguments for {tool}: {error}")))
}

/// A tool error with a human-readable text.
fn error_text(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

/// A successful result whose text is the JSON body (Composio answers JSON text).
fn ok_json(body: Value) -> CallToolResult {
    json_result(&body, false)
}

fn json_result(body: &Value, is_error: bool) -> CallToolResult {
    let content = vec![ContentBlock::text(body.to_string())];
    if is_error {
        CallToolResult::error(content)
    } else {
        CallToolResult::success(content)
    }
}

/// `kilobytes` KiB of text: numbered 1 KiB lines (`line 00000042 ` + filler + `\n`), so a
/// receiver can verify that nothing was lost, duplicated or reordered.
pub(crate) fn large_text(kilobytes: u64) -> String {
    const LINE: usize = 1024;
    let lines = usize::try_from(kilobytes).unwrap_or(0);
    let mut text = String::with_capacity(lines * LINE);
    for index in 0..lines {
        let start = text.len();
        text.push_str(&format!("line {index:08} "));
        let filler = LINE - 1 - (text.len() - start);
        text.extend(std::iter::repeat_n('x', filler));
        text.push('\n');
    }
    text
}
