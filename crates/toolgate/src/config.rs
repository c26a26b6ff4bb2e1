//! The effective configuration: built-in defaults < TOML file < environment < command-line
//! flags, merged with figment, then validated before anything binds a port.
//!
//! The TOML file is `--config PATH`, else `./toolgate.toml` when it exists. Environment
//! variables are `TOOLGATE_<KEY>` where a section and its key are joined by one underscore
//! (`TOOLGATE_LOG_LEVEL` → `log.level`, `TOOLGATE_GATE_WAIT_TIMEOUT` → `gate.wait_timeout`), plus
//! the Composio SDKs' own `COMPOSIO_API_KEY` and `COMPOSIO_BASE_URL` (which the `TOOLGATE_`
//! spelling overrides). Only known keys are read from the environment, so unrelated
//! `TOOLGATE_*` variables (test harness paths, for instance) are ignored; the TOML file, on the
//! other hand, rejects unknown keys so a typo is reported instead of silently ignored.
//!
//! `config/toolgate.example.toml` documents every key; keep it in step with this file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use toolgate_proxy::config::{ProxyConfig, WaitMode};
use toolgate_proxy::header_args::{header_map, parse_header_arg, parse_header_file};
use toolgate_proxy::stdio::StdioConfig;
use toolgate_proxy::upstream::UpstreamTarget;

mod limits;
mod upstream;

pub(crate) use limits::LimitsSection;
pub(crate) use upstream::UpstreamSection;

/// The file read when `--config` is not given, if it exists in the working directory.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "toolgate.toml";

/// Composio's production API origin.
pub(crate) const DEFAULT_BASE_URL: &str = "https://backend.composio.dev";

/// How long a first request waits for its Composio session before it is answered "not ready"
/// (the stdio bridge's first request, a new user's first request in multi-user modes).
pub(crate) const COMPOSIO_UPSTREAM_WAIT: Duration = Duration::from_secs(30);

/// Interval of progress notifications while a call is held in wait mode.
const WAIT_PROGRESS_INTERVAL: Duration = Duration::from_secs(5);

/// Paths the binary serves itself next to the MCP path; the MCP path must not shadow them.
pub(crate) const RESERVED_PATHS: &[&str] = &[
    "/connections",
    "/callback",
    "/healthz",
    "/readyz",
    "/metrics",
];

/// The whole effective configuration of `serve`, `stdio`, `status`, `connect` and `config`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Config {
    /// The end user whose Composio connections this gateway uses (Composio's `user_id`).
    pub(crate) user_id: Option<String>,
    /// Toolkit slugs that must be connected before any `tools/call` is forwarded.
    #[serde(deserialize_with = "list_or_comma_string")]
    pub(crate) require: Vec<String>,
    /// Where Composio sends the user's browser after a Connect Link; defaults to this
    /// gateway's own `/callback` on the listen address.
    pub(crate) callback_url: Option<String>,
    /// Address the HTTP face listens on.
    pub(crate) listen: SocketAddr,
    /// Path of the MCP endpoint on that listener.
    pub(crate) path: String,
    /// Extra `Host` header values accepted besides the loopback names.
    #[serde(deserialize_with = "list_or_comma_string")]
    pub(crate) allowed_hosts: Vec<String>,
    /// Browser origins accepted in `Origin` (requests without `Origin` are always accepted).
    #[serde(deserialize_with = "list_or_comma_string")]
    pub(crate) allowed_origins: Vec<String>,
    /// Bearer token every inbound request must carry; required to listen beyond loopback.
    #[serde(serialize_with = "redact_option")]
    pub(crate) token: Option<SecretString>,
    /// Generic mode's MCP URL (`upstream.url`, or the `upstream = "URL"` shorthand) and the
    /// upstream timeouts of both modes.
    pub(crate) upstream: UpstreamSection,
    /// Generic mode: headers added to every upstream request, `Name: value`; `${VAR}` expands
    /// from the environment. Treated as secrets when printed.
    #[serde(
        deserialize_with = "list_or_comma_string",
        serialize_with = "redact_headers"
    )]
    pub(crate) headers: Vec<String>,
    /// Generic mode: a file of `Name: value` headers (one per line, `#` comments, `${VAR}`
    /// expanded), read before `headers`, to keep secrets out of the process list.
    pub(crate) header_file: Option<PathBuf>,
    /// Generic mode: accept a plain-http upstream that is not on loopback (the headers would
    /// cross the network unencrypted).
    pub(crate) allow_http: bool,
    /// Largest accepted POST body on the MCP endpoint, in bytes (413 beyond).
    pub(crate) max_body_bytes: usize,
    /// Upper bound on opening a connection to the upstream MCP endpoint.
    #[serde(with = "humantime_serde")]
    pub(crate) connect_timeout: Duration,
    /// After SIGINT/SIGTERM, how long in-flight requests and open streams may finish.
    #[serde(with = "humantime_serde")]
    pub(crate) drain_timeout: Duration,
    /// Composio API access.
    pub(crate) composio: ComposioSection,
    /// Options of the Composio session toolgate creates.
    pub(crate) session: SessionSection,
    /// How blocked tool calls are answered.
    pub(crate) gate: GateSection,
    /// Logging (always to stderr).
    pub(crate) log: LogSection,
    /// How a request's user is determined (`auth.mode`).
    pub(crate) auth: crate::auth::AuthSection,
    /// Bounds of the per-user pool in multi-user modes.
    pub(crate) users: crate::auth::UsersSection,
    /// Secrets (32+ bytes each, newest first) sealing `Mcp-Session-Id` values so any replica
    /// serves any session. Never printed.
    #[serde(deserialize_with = "secret_list", serialize_with = "redact_list")]
    pub(crate) session_key: Vec<SecretString>,
    /// Bounds on what clients can make the HTTP listener hold.
    pub(crate) limits: LimitsSection,
}

/// `[composio]`: how to reach Composio.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ComposioSection {
    /// Project API key (`x-api-key`). Never logged or printed.
    #[serde(serialize_with = "redact_option")]
    pub(crate) api_key: Option<SecretString>,
    /// API origin, e.g. `https://backend.composio.dev` or a local sandbox.
    pub(crate) base_url: String,
    /// Ceiling on toolgate's own background calls to Composio (polls, re-checks) per minute;
    /// calls a person triggers are counted but not held back.
    pub(crate) background_calls_per_minute: u32,
}

/// `[session]`: the body of the session toolgate creates (or the session it reuses).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SessionSection {
    /// Reuse this existing session (`trs_...`) instead of creating one.
    pub(crate) id: Option<String>,
    /// Let the model mint auth links in chat (`COMPOSIO_MANAGE_CONNECTIONS`). Off by default:
    /// toolgate hands out the links itself.
    pub(crate) manage_connections: bool,
    /// Allowlist of toolkits the session exposes (`toolkits.enable`).
    #[serde(deserialize_with = "list_or_comma_string")]
    pub(crate) toolkits_enable: Vec<String>,
    /// Denylist of toolkits (`toolkits.disable`); exclusive with `toolkits_enable`.
    #[serde(deserialize_with = "list_or_comma_string")]
    pub(crate) toolkits_disable: Vec<String>,
    /// Auth config per toolkit slug (`ac_...`).
    pub(crate) auth_configs: BTreeMap<String, String>,
    /// Connected accounts pinned per toolkit slug: one `ca_...` id or alias, or a list of them
    /// (several need `multi_account.enable`).
    #[serde(deserialize_with = "map_of_lists")]
    pub(crate) connected_accounts: BTreeMap<String, Vec<String>>,
    /// Several accounts per toolkit (`multi_account`).
    pub(crate) multi_account: MultiAccountSection,
    /// Where the session id is remembered across runs; empty disables it. Default
    /// `$XDG_STATE_HOME/toolgate/sessions.json` (`~/.local/state/...`).
    pub(crate) state_file: Option<PathBuf>,
}

/// `[session.multi_account]`: several connected accounts per toolkit.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MultiAccountSection {
    /// Allow several accounts per toolkit in the session.
    pub(crate) enable: bool,
    /// At most this many per toolkit (2 to 10; Composio's default 5 when unset).
    pub(crate) max_accounts_per_toolkit: Option<u32>,
    /// The model must name the account on each call instead of using the default one.
    pub(crate) require_explicit_selection: bool,
}

/// `[gate]`: what a `tools/call` meets while a required toolkit is not connected.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct GateSection {
    /// `block` answers at once with the Connect Links; `wait` holds the call until the gate
    /// opens or `wait_timeout` passes, then answers like `block`.
    pub(crate) mode: GateMode,
    /// How long `wait` mode holds a call.
    #[serde(with = "humantime_serde")]
    pub(crate) wait_timeout: Duration,
    /// `all`: every pending toolkit blocks every call; `toolkit`: a call is blocked only by
    /// the toolkits it uses (search and schema calls pass).
    pub(crate) scope: GateScope,
    /// How often connections are re-verified with Composio while the gate is open (a revoked
    /// account closes the gate at the next re-check; the callback and upstream 401/403 trigger
    /// one at once).
    #[serde(with = "humantime_serde")]
    pub(crate) recheck_interval: Duration,
}

/// Which toolkits block a `tools/call`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum GateScope {
    /// Every pending required toolkit blocks every call.
    All,
    /// Only the toolkits a call uses (`COMPOSIO_MULTI_EXECUTE_TOOL`'s `tools[].tool_slug`).
    Toolkit,
}

/// Gate modes.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum GateMode {
    /// Answer a blocked call immediately.
    Block,
    /// Hold a blocked call (bounded) until the gate opens.
    Wait,
}

/// `[log]`: logging to stderr.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct LogSection {
    /// `text` for people, `json` for log collectors.
    pub(crate) format: LogFormat,
    /// A tracing filter: `info`, `debug`, or directives like `info,toolgate_proxy=debug`.
    pub(crate) level: String,
}

/// Log line formats.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        // The proxy library's defaults are the defaults of the keys it owns.
        let proxy = ProxyConfig::default();
        Self {
            user_id: None,
            require: Vec::new(),
            callback_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            path: proxy.mcp_path,
            allowed_hosts: Vec::new(),
            allowed_origins: Vec::new(),
            token: None,
            upstream: UpstreamSection::default(),
            headers: Vec::new(),
            header_file: None,
            allow_http: false,
            max_body_bytes: proxy.max_body_bytes,
            connect_timeout: proxy.connect_timeout,
            drain_timeout: proxy.drain_timeout,
            composio: ComposioSection::default(),
            session: SessionSection::default(),
            gate: GateSection::default(),
            log: LogSection::default(),
            auth: crate::auth::AuthSection::default(),
            users: crate::auth::UsersSection::default(),
            session_key: Vec::new(),
            limits: LimitsSection::default(),
        }
    }
}

impl Default for ComposioSection {
    fn default() -> Self {
        Self {
            api_key: None,
            base_url: DEFAULT_BASE_URL.to_owned(),
            background_calls_per_minute: 60,
        }
    }
}

impl Default for GateSection {
    fn default() -> Self {
        Self {
            mode: GateMode::Block,
            wait_timeout: Duration::from_secs(30),
            scope: GateScope::All,
            recheck_interval: Duration::from_secs(300),
        }
    }
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

/// The command-line flags that override configuration keys, shared by `serve`, `stdio` and
/// `config` (`status` and `connect` take the Composio subset).
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct ConfigArgs {
    /// TOML configuration file (default: ./toolgate.toml when present).
    #[arg(long, value_name = "PATH")]
    pub(crate) config: Option<PathBuf>,
    /// Composio user id (`user_id`). `--user` is the same flag, for `toolgate status --user U`
    /// against a multi-user configuration.
    #[arg(long, alias = "user", value_name = "ID")]
    pub(crate) user_id: Option<String>,
    /// Required toolkit; repeat or comma-separate (`require`).
    #[arg(long, value_name = "TOOLKIT", value_delimiter = ',')]
    pub(crate) require: Vec<String>,
    /// Listen address (`listen`).
    #[arg(long, value_name = "ADDR")]
    pub(crate) listen: Option<String>,
    /// Generic mode: upstream MCP URL (`upstream`).
    #[arg(long, value_name = "URL")]
    pub(crate) upstream: Option<String>,
    /// Generic mode: upstream header `Name: value`, repeatable (`headers`); `${VAR}` expands.
    #[arg(long = "header", value_name = "NAME: VALUE")]
    pub(crate) headers: Vec<String>,
    /// Generic mode: file of `Name: value` header lines (`header_file`).
    #[arg(long, value_name = "PATH")]
    pub(crate) header_file: Option<PathBuf>,
    /// Generic mode: accept a plain-http upstream off loopback (`allow_http`).
    #[arg(long)]
    pub(crate) allow_http: bool,
    /// Composio API origin (`composio.base_url`).
    #[arg(long, value_name = "URL")]
    pub(crate) base_url: Option<String>,
    /// Log level or filter (`log.level`).
    #[arg(long, value_name = "FILTER")]
    pub(crate) log_level: Option<String>,
    /// Log format, `text` or `json` (`log.format`).
    #[arg(long, value_name = "FORMAT")]
    pub(crate) log_format: Option<String>,
}

/// The flags of the MCP endpoint over HTTP (`serve`, and `config` to show their effect).
#[derive(Clone, Debug, Default, clap::Args)]
pub(crate) struct HttpArgs {
    /// Path of the MCP endpoint (`path`).
    #[arg(long, value_name = "PATH")]
    pub(crate) mcp_path: Option<String>,
    /// Name of the environment variable holding the inbound bearer token (`token`; default
    /// `TOOLGATE_TOKEN`).
    #[arg(long, value_name = "VAR")]
    pub(crate) token_env: Option<String>,
    /// Extra browser origin accepted besides loopback ones, `scheme://host[:port]`;
    /// repeatable, added to `allowed_origins`.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub(crate) allowed_origins: Vec<String>,
    /// Extra Host name accepted besides loopback names; repeatable, added to `allowed_hosts`.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub(crate) allowed_hosts: Vec<String>,
    /// Largest accepted POST body, in bytes (`max_body_bytes`).
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_body_bytes: Option<usize>,
    /// Upper bound on connecting to the upstream, e.g. `10s` (`connect_timeout`).
    #[arg(long, value_name = "DURATION")]
    pub(crate) connect_timeout: Option<String>,
    /// How long open requests may continue after SIGINT/SIGTERM, e.g. `10s`
    /// (`drain_timeout`).
    #[arg(long, value_name = "DURATION")]
    pub(crate) drain_timeout: Option<String>,
}

/// A configuration problem: names the offending key. Shown as one stderr line; exit code 64.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: `{key}`: {message}")]
pub(crate) struct ConfigError {
    /// Dotted key, e.g. `gate.mode`.
    pub(crate) key: String,
    /// What is wrong, and what would be right.
    pub(crate) message: String,
}

impl ConfigError {
    fn new(key: &str, message: impl Into<String>) -> Self {
        Self {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

/// Environment variable (without the `TOOLGATE_` prefix, lowercase) → config key.
const ENV_KEYS: &[(&str, &str)] = &[
    ("user_id", "user_id"),
    ("require", "require"),
    ("callback_url", "callback_url"),
    ("listen", "listen"),
    ("path", "path"),
    ("allowed_hosts", "allowed_hosts"),
    ("allowed_origins", "allowed_origins"),
    ("token", "token"),
    ("headers", "headers"),
    ("header_file", "header_file"),
    ("allow_http", "allow_http"),
    ("max_body_bytes", "max_body_bytes"),
    ("connect_timeout", "connect_timeout"),
    ("drain_timeout", "drain_timeout"),
    ("composio_api_key", "composio.api_key"),
    ("composio_base_url", "composio.base_url"),
    ("session_id", "session.id"),
    ("session_manage_connections", "session.manage_connections"),
    ("session_toolkits_enable", "session.toolkits_enable"),
    ("session_toolkits_disable", "session.toolkits_disable"),
    ("session_state_file", "session.state_file"),
    ("gate_mode", "gate.mode"),
    ("gate_scope", "gate.scope"),
    ("gate_wait_timeout", "gate.wait_timeout"),
    ("gate_recheck_interval", "gate.recheck_interval"),
    ("log_format", "log.format"),
    ("log_level", "log.level"),
    ("auth_mode", "auth.mode"),
    ("auth_tokens_file", "auth.tokens_file"),
    ("auth_header_name", "auth.header.name"),
    ("auth_jwt_jwks_url", "auth.jwt.jwks_url"),
    ("auth_jwt_jwks_file", "auth.jwt.jwks_file"),
    ("auth_jwt_issuer", "auth.jwt.issuer"),
    ("auth_jwt_resource", "auth.jwt.resource"),
    ("auth_jwt_user_claim", "auth.jwt.user_claim"),
    (
        "auth_jwt_authorization_servers",
        "auth.jwt.authorization_servers",
    ),
    ("users_max_active", "users.max_active"),
    ("users_idle_timeout", "users.idle_timeout"),
    ("session_key", "session_key"),
];

/// Flag values in the shape of the config, only those that were given.
#[derive(Serialize, Default)]
struct FlagOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    require: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<BTreeMap<&'static str, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    header_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    allow_http: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_body_bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    drain_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    composio: Option<BTreeMap<&'static str, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<BTreeMap<&'static str, String>>,
}

/// Every flag of a command, as the top layer of the configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flags<'a> {
    /// The configuration flags.
    pub(crate) config: &'a ConfigArgs,
    /// The HTTP endpoint's flags (`HttpArgs::default()` for commands without them).
    pub(crate) http: &'a HttpArgs,
}

impl Flags<'_> {
    fn overrides(&self) -> FlagOverrides {
        let (args, http) = (self.config, self.http);
        let mut log = BTreeMap::new();
        if let Some(level) = &args.log_level {
            log.insert("level", level.clone());
        }
        if let Some(format) = &args.log_format {
            log.insert("format", format.clone());
        }
        // `--token-env VAR` moves the token to another variable; unset or empty means none
        // from there (the file and TOOLGATE_TOKEN still apply).
        let token = http
            .token_env
            .as_deref()
            .and_then(|var| std::env::var(var).ok())
            .filter(|token| !token.is_empty());
        FlagOverrides {
            user_id: args.user_id.clone(),
            require: (!args.require.is_empty()).then(|| args.require.clone()),
            listen: args.listen.clone(),
            path: http.mcp_path.clone(),
            token,
            upstream: args
                .upstream
                .as_ref()
                .map(|url| BTreeMap::from([("url", url.clone())])),
            headers: (!args.headers.is_empty()).then(|| args.headers.clone()),
            header_file: args.header_file.clone(),
            allow_http: args.allow_http,
            max_body_bytes: http.max_body_bytes,
            connect_timeout: http.connect_timeout.clone(),
            drain_timeout: http.drain_timeout.clone(),
            composio: args
                .base_url
                .as_ref()
                .map(|url| BTreeMap::from([("base_url", url.clone())])),
            log: (!log.is_empty()).then_some(log),
        }
    }
}

/// Builds the layered figment for the configuration flags alone (commands without HTTP
/// flags), on the built-in defaults.
pub(crate) fn figment(args: &ConfigArgs) -> Result<Figment, ConfigError> {
    layered(
        Flags {
            config: args,
            http: &HttpArgs::default(),
        },
        &Config::default(),
    )
}

/// Builds the layered figment: `defaults`, file, environment, flags. `defaults` must carry
/// no secrets (it is serialized, and serializing redacts them).
pub(crate) fn layered(flags: Flags<'_>, defaults: &Config) -> Result<Figment, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(defaults));
    match &flags.config.config {
        Some(path) => {
            if !path.is_file() {
                return Err(ConfigError::new(
                    "--config",
                    format!("{} does not exist or is not a file", path.display()),
                ));
            }
            figment = figment.merge(upstream::Shorthand(Toml::file_exact(path)));
        }
        None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
            figment = figment.merge(upstream::Shorthand(Toml::file_exact(DEFAULT_CONFIG_FILE)));
        }
        None => {}
    }
    // The SDKs' variables first, so the `TOOLGATE_` spelling wins when both are set.
    let composio_env = EnvStrings::read(
        "COMPOSIO_ environment variable(s)",
        [
            ("COMPOSIO_API_KEY", "composio.api_key"),
            ("COMPOSIO_BASE_URL", "composio.base_url"),
        ]
        .into_iter()
        .map(|(var, key)| (var.to_owned(), key)),
    );
    let toolgate_env = EnvStrings::read(
        "TOOLGATE_ environment variable(s)",
        ENV_KEYS
            .iter()
            .chain(limits::ENV_KEYS)
            .chain(upstream::ENV_KEYS)
            .map(|(env, key)| (format!("TOOLGATE_{}", env.to_uppercase()), *key)),
    );
    Ok(figment
        .merge(composio_env)
        .merge(toolgate_env)
        .merge(Serialized::defaults(flags.overrides())))
}

/// Keys whose environment value is a boolean or a number; every other key is a string.
const BOOL_KEYS: &[&str] = &["session.manage_connections", "allow_http"];
const NUMBER_KEYS: &[&str] = &["max_body_bytes", "users.max_active"];

/// An environment value as the type its key has. A value that does not parse stays a string,
/// so the key's own type error names it.
fn typed_env_value(key: &str, raw: &str) -> figment::value::Value {
    use figment::value::Value;
    let trimmed = raw.trim();
    if BOOL_KEYS.contains(&key)
        && let Ok(flag) = trimmed.parse::<bool>()
    {
        return Value::from(flag);
    }
    if (NUMBER_KEYS.contains(&key) || limits::NUMERIC_KEYS.contains(&key))
        && let Ok(number) = trimmed.parse::<u64>()
    {
        return Value::from(number);
    }
    Value::from(raw.to_owned())
}

/// Environment variables taken verbatim as strings. figment's own `Env` provider parses values
/// as TOML scalars, which would turn `TOOLGATE_USER_ID=12345` into a number and then reject it;
/// the few booleans and numbers are parsed explicitly ([`typed_env_value`]).
struct EnvStrings {
    name: &'static str,
    values: Vec<(&'static str, String)>,
}

impl EnvStrings {
    fn read(name: &'static str, vars: impl Iterator<Item = (String, &'static str)>) -> Self {
        // An empty variable counts as unset: env files and orchestrators routinely carry
        // `NAME=` placeholders, and "" is never a meaningful value for any of these keys.
        let values = vars
            .filter_map(|(var, key)| std::env::var(&var).ok().map(|value| (key, value)))
            .filter(|(_, value)| !value.is_empty())
            .collect();
        Self { name, values }
    }
}

impl figment::Provider for EnvStrings {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(self.name)
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        use figment::value::Dict;
        let mut root = Dict::new();
        for (key, raw) in &self.values {
            let value = typed_env_value(key, raw);
            // `auth.jwt.jwks_url` nests two levels: one dict per section.
            insert_nested(&mut root, key, value);
        }
        Ok(figment::Profile::Default.collect(root))
    }
}

/// Inserts `value` at the dotted `key`, creating the section dicts on the way.
fn insert_nested(dict: &mut figment::value::Dict, key: &str, value: figment::value::Value) {
    use figment::value::{Dict, Tag, Value};
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((section, rest)) => {
            let entry = dict
                .entry(section.to_owned())
                .or_insert_with(|| Value::Dict(Tag::Default, Dict::new()));
            if let Value::Dict(_, inner) = entry {
                insert_nested(inner, rest, value);
            }
        }
    }
}

/// Loads and validates the effective configuration.
pub(crate) fn load(args: &ConfigArgs) -> Result<Config, ConfigError> {
    load_with(
        Flags {
            config: args,
            http: &HttpArgs::default(),
        },
        &Config::default(),
    )
}

/// Loads and validates the effective configuration of every layer over `defaults`: the one
/// settings load of every command and mode.
pub(crate) fn load_with(flags: Flags<'_>, defaults: &Config) -> Result<Config, ConfigError> {
    let config = extract(flags, defaults)?;
    config.validate()?;
    Ok(config)
}

/// The merged configuration, not yet validated (`toolgate config` prints an incomplete one).
pub(crate) fn extract(flags: Flags<'_>, defaults: &Config) -> Result<Config, ConfigError> {
    let mut config: Config = layered(flags, defaults)?.extract().map_err(figment_error)?;
    // `--allow-host` and `--allow-origin` add to the configured lists rather than replace
    // them: they name extras, like the keys do.
    config
        .allowed_hosts
        .extend(flags.http.allowed_hosts.iter().cloned());
    config
        .allowed_origins
        .extend(flags.http.allowed_origins.iter().cloned());
    Ok(config)
}

/// Turns figment's error into ours, naming the key.
fn figment_error(error: figment::Error) -> ConfigError {
    let key = if error.path.is_empty() {
        "config".to_owned()
    } else {
        error.path.join(".")
    };
    let source = error
        .metadata
        .as_ref()
        .map(|metadata| match &metadata.source {
            Some(source) => format!(" (from {source})"),
            None => format!(" (from {})", metadata.name),
        })
        .unwrap_or_default();
    ConfigError::new(&key, format!("{}{source}", error.kind))
}

/// A list of secrets (a TOML list, or one comma-separated string from the environment).
fn secret_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<SecretString>, D::Error> {
    Ok(list_or_comma_string(deserializer)?
        .into_iter()
        .map(SecretString::from)
        .collect())
}

/// Secrets print as one redaction mark each.
fn redact_list<S: serde::Serializer>(
    list: &[SecretString],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    vec![REDACTED; list.len()].serialize(serializer)
}

/// A map whose values are one string or a list of strings (`gmail = "ca_1"` or
/// `gmail = ["ca_1", "ca_2"]`).
fn map_of_lists<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<String>),
        One(String),
    }
    let map = BTreeMap::<String, OneOrMany>::deserialize(deserializer)?;
    Ok(map
        .into_iter()
        .map(|(key, value)| {
            let values = match value {
                OneOrMany::Many(values) => values,
                OneOrMany::One(value) => vec![value],
            };
            let values = values
                .into_iter()
                .map(|value| value.trim().to_owned())
                .filter(|value| !value.is_empty())
                .collect();
            (key, values)
        })
        .collect())
}

/// Accepts a TOML/JSON list or one comma-separated string (the form env vars and flags give).
pub(crate) fn list_or_comma_string<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        One(String),
    }
    Ok(match ListOrString::deserialize(deserializer)? {
        ListOrString::List(items) => items
            .into_iter()
            .map(|item| item.trim().to_owned())
            .filter(|item| !item.is_empty())
            .collect(),
        ListOrString::One(text) => text
            .split(',')
            .map(|item| item.trim().to_owned())
            .filter(|item| !item.is_empty())
            .collect(),
    })
}

const REDACTED: &str = "<redacted>";

fn redact_option<S: serde::Serializer>(
    value: &Option<SecretString>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(_) => serializer.serialize_str(REDACTED),
        None => serializer.serialize_none(),
    }
}

/// Header names stay visible (useful when debugging), values never.
fn redact_headers<S: serde::Serializer>(
    headers: &[String],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let redacted: Vec<String> = headers
        .iter()
        .map(|line| match line.split_once(':') {
            Some((name, _)) => format!("{}: {REDACTED}", name.trim()),
            None => REDACTED.to_owned(),
        })
        .collect();
    redacted.serialize(serializer)
}

/// Which backend the gateway fronts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A Composio tool-router session, gated on the required toolkits.
    Composio,
    /// A fixed MCP URL with configured headers; the gate is always open.
    Generic,
}

impl Config {
    /// Generic mode when `upstream.url` is set, else Composio mode.
    pub(crate) fn mode(&self) -> Mode {
        if self.upstream.url.is_some() {
            Mode::Generic
        } else {
            Mode::Composio
        }
    }

    /// The callback URL handed to Composio: the configured one, else this gateway's
    /// `/callback` on the listen address (loopback name when listening on all interfaces).
    pub(crate) fn effective_callback_url(&self) -> String {
        if let Some(url) = &self.callback_url {
            return url.clone();
        }
        let host = if self.listen.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            match self.listen {
                SocketAddr::V4(addr) => addr.ip().to_string(),
                SocketAddr::V6(addr) => format!("[{}]", addr.ip()),
            }
        };
        format!("http://{host}:{}/callback", self.listen.port())
    }

    /// The required keys this mode lacks, each with how to set it (for `toolgate config`).
    pub(crate) fn missing_required(&self) -> Vec<(&'static str, &'static str)> {
        let mut missing = Vec::new();
        if self.mode() != Mode::Composio {
            return missing;
        }
        let key_set = self
            .composio
            .api_key
            .as_ref()
            .is_some_and(|key| !key.expose_secret().is_empty());
        if !key_set {
            missing.push((
                "composio.api_key",
                "required in Composio mode (set COMPOSIO_API_KEY, or set upstream for generic mode)",
            ));
        }
        if self
            .user_id
            .as_deref()
            .is_none_or(|id| id.trim().is_empty())
        {
            missing.push((
                "user_id",
                "required in Composio mode (set TOOLGATE_USER_ID or pass --user-id)",
            ));
        }
        missing
    }

    /// The API key, when configured.
    pub(crate) fn api_key(&self) -> Option<&SecretString> {
        self.composio.api_key.as_ref()
    }

    /// Checks every rule figment's types cannot express. Errors name the key.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        match self.mode() {
            Mode::Composio => self.validate_composio()?,
            Mode::Generic => self.validate_generic()?,
        }
        if !self.path.starts_with('/') || self.path.contains(['?', '#', ' ']) {
            return Err(ConfigError::new(
                "path",
                format!("{:?} must be an absolute URL path like /mcp", self.path),
            ));
        }
        if RESERVED_PATHS.iter().any(|reserved| {
            self.path == *reserved || self.path.starts_with(&format!("{reserved}/"))
        }) || self.path == "/"
        {
            return Err(ConfigError::new(
                "path",
                format!(
                    "{} is taken by toolgate's own pages ({})",
                    self.path,
                    RESERVED_PATHS.join(", ")
                ),
            ));
        }
        self.validate_proxy()?;
        crate::auth::validate(self).map_err(|(key, message)| ConfigError::new(key, message))?;
        if self.gate.mode == GateMode::Wait && self.gate.wait_timeout.is_zero() {
            return Err(ConfigError::new(
                "gate.wait_timeout",
                "must be more than zero in wait mode",
            ));
        }
        if self.gate.wait_timeout > Duration::from_secs(3600) {
            return Err(ConfigError::new("gate.wait_timeout", "must be at most 1h"));
        }
        if self.drain_timeout > Duration::from_secs(3600) {
            return Err(ConfigError::new("drain_timeout", "must be at most 1h"));
        }
        if self.gate.recheck_interval < Duration::from_secs(1)
            || self.gate.recheck_interval > Duration::from_secs(86_400)
        {
            return Err(ConfigError::new(
                "gate.recheck_interval",
                "must be between 1s and 24h",
            ));
        }
        self.limits.validate(self.max_body_bytes)?;
        self.upstream.validate()?;
        if let Err(error) = tracing_subscriber::EnvFilter::builder().parse(&self.log.level) {
            return Err(ConfigError::new(
                "log.level",
                format!("{:?} is not a level or filter: {error}", self.log.level),
            ));
        }
        Ok(())
    }

    fn validate_composio(&self) -> Result<(), ConfigError> {
        match self
            .composio
            .api_key
            .as_ref()
            .map(|key| key.expose_secret())
        {
            None | Some("") => {
                return Err(ConfigError::new(
                    "composio.api_key",
                    "required (set COMPOSIO_API_KEY, or pass --upstream for generic mode)",
                ));
            }
            Some(key) if key.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(ConfigError::new(
                    "composio.api_key",
                    "contains whitespace or control characters",
                ));
            }
            Some(_) => {}
        }
        check_http_url("composio.base_url", &self.composio.base_url)?;
        match self.user_id.as_deref().map(str::trim) {
            // The multi-user modes take the user from each request.
            None | Some("") if self.auth.mode.is_multi_user() => {}
            None | Some("") => {
                return Err(ConfigError::new(
                    "user_id",
                    "required in Composio mode (set TOOLGATE_USER_ID or pass --user-id)",
                ));
            }
            Some(_) => {}
        }
        for slug in &self.require {
            check_slug("require", slug)?;
        }
        self.validate_session()?;
        if let Some(url) = &self.callback_url {
            check_http_url("callback_url", url)?;
        }
        if !self.headers.is_empty() {
            return Err(ConfigError::new(
                "headers",
                "only used in generic mode (with upstream); Composio mode sends its own",
            ));
        }
        if self.header_file.is_some() {
            return Err(ConfigError::new(
                "header_file",
                "only used in generic mode (with upstream); Composio mode sends its own",
            ));
        }
        Ok(())
    }

    /// `[session]` and how it fits `require`.
    fn validate_session(&self) -> Result<(), ConfigError> {
        for slug in self
            .session
            .toolkits_enable
            .iter()
            .chain(&self.session.toolkits_disable)
        {
            check_slug("session.toolkits_enable", slug)?;
        }
        if !self.session.toolkits_enable.is_empty() && !self.session.toolkits_disable.is_empty() {
            return Err(ConfigError::new(
                "session.toolkits_disable",
                "cannot be combined with session.toolkits_enable",
            ));
        }
        if !self.session.toolkits_enable.is_empty()
            && let Some(missing) = self
                .require
                .iter()
                .find(|slug| !self.session.toolkits_enable.contains(slug))
        {
            return Err(ConfigError::new(
                "session.toolkits_enable",
                format!("does not include the required toolkit {missing:?}"),
            ));
        }
        if let Some(disabled) = self
            .require
            .iter()
            .find(|slug| self.session.toolkits_disable.contains(slug))
        {
            return Err(ConfigError::new(
                "session.toolkits_disable",
                format!("disables the required toolkit {disabled:?}"),
            ));
        }
        for (slug, id) in &self.session.auth_configs {
            check_slug("session.auth_configs", slug)?;
            if !id.starts_with("ac_") {
                return Err(ConfigError::new(
                    "session.auth_configs",
                    format!("{slug} = {id:?} is not an auth config id (ac_...)"),
                ));
            }
        }
        self.validate_accounts()?;
        if let Some(id) = &self.session.id
            && (!id.starts_with("trs_") || id.len() < 5)
        {
            return Err(ConfigError::new(
                "session.id",
                format!("{id:?} is not a session id (trs_...)"),
            ));
        }
        Ok(())
    }

    /// Pins (ids or aliases), multi-account bounds and the background call ceiling.
    fn validate_accounts(&self) -> Result<(), ConfigError> {
        let multi = &self.session.multi_account;
        let max = multi.max_accounts_per_toolkit.unwrap_or(5);
        if multi.max_accounts_per_toolkit.is_some() && !(2..=10).contains(&max) {
            return Err(ConfigError::new(
                "session.multi_account.max_accounts_per_toolkit",
                "must be between 2 and 10",
            ));
        }
        for (slug, ids) in &self.session.connected_accounts {
            check_slug("session.connected_accounts", slug)?;
            let allowed = if multi.enable { max as usize } else { 1 };
            if ids.is_empty() || ids.len() > allowed {
                return Err(ConfigError::new(
                    "session.connected_accounts",
                    format!(
                        "{slug} pins {} accounts; between 1 and {allowed} allowed{}",
                        ids.len(),
                        if multi.enable {
                            ""
                        } else {
                            " (set session.multi_account.enable for more)"
                        }
                    ),
                ));
            }
            if let Some(bad) = ids
                .iter()
                .find(|id| id.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                return Err(ConfigError::new(
                    "session.connected_accounts",
                    format!("{slug} = {bad:?} is neither an account id (ca_...) nor an alias"),
                ));
            }
        }
        if !(1..=10_000).contains(&self.composio.background_calls_per_minute) {
            return Err(ConfigError::new(
                "composio.background_calls_per_minute",
                "must be between 1 and 10000",
            ));
        }
        Ok(())
    }

    fn validate_generic(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.upstream.url {
            check_http_url("upstream.url", url)?;
            let plain = url::Url::parse(url)
                .is_ok_and(|url| url.scheme() == "http" && !is_loopback_url(&url));
            if plain && !self.allow_http {
                return Err(ConfigError::new(
                    "upstream.url",
                    "plain http to a non-loopback host would send the headers unencrypted; use \
                     https, or set allow_http (--allow-http) to accept that",
                ));
            }
        }
        if !self.require.is_empty() {
            return Err(ConfigError::new(
                "require",
                "only used in Composio mode; generic mode (upstream) has no toolkits to wait for",
            ));
        }
        self.generic_target().map(drop)
    }

    /// The access and limit keys, checked by the proxy library's rules (one rule each, the
    /// same in every mode).
    fn validate_proxy(&self) -> Result<(), ConfigError> {
        use toolgate_proxy::config::ConfigError as Proxy;
        self.proxy_config().validate().map_err(|error| {
            let key = match &error {
                Proxy::BadPath(_) => "path",
                Proxy::BadOrigin(_) => "allowed_origins",
                Proxy::BadHost(_) => "allowed_hosts",
                Proxy::ZeroBodyLimit => "max_body_bytes",
                Proxy::WeakToken(_) => "token",
            };
            ConfigError::new(key, error.to_string())
        })?;
        // Per-user tokens and JWTs guard the door as well as a shared token does.
        let guarded = self.token.is_some()
            || matches!(
                self.auth.mode,
                toolgate_proxy::identity::AuthMode::Tokens
                    | toolgate_proxy::identity::AuthMode::Jwt
            );
        if !self.listen.ip().is_loopback() && !guarded {
            return Err(ConfigError::new(
                "token",
                format!(
                    "required when listening on a non-loopback address ({}); set TOOLGATE_TOKEN \
                     (or the variable --token-env names)",
                    self.listen
                ),
            ));
        }
        Ok(())
    }

    /// The proxy library's limits of the HTTP listener (`[limits]` and the body cap).
    pub(crate) fn server_limits(&self) -> toolgate_proxy::limits::ServerLimits {
        self.limits.server_limits(self.max_body_bytes)
    }

    /// The proxy library's configuration of the MCP endpoint over HTTP.
    pub(crate) fn proxy_config(&self) -> ProxyConfig {
        ProxyConfig {
            mcp_path: self.path.clone(),
            allowed_hosts: self.allowed_hosts.clone(),
            allowed_origins: self.allowed_origins.clone(),
            bearer_token: self.token.clone(),
            max_body_bytes: self.max_body_bytes,
            wait: self.wait_mode(),
            connect_timeout: self.connect_timeout,
            upstream_timeouts: self.upstream.timeouts(),
            drain_timeout: self.drain_timeout,
            ..ProxyConfig::default()
        }
    }

    /// The proxy library's configuration of the stdio bridge.
    pub(crate) fn stdio_config(&self) -> StdioConfig {
        let defaults = StdioConfig::default();
        StdioConfig {
            wait: self.wait_mode(),
            connect_timeout: self.connect_timeout,
            upstream_timeouts: self.upstream.timeouts(),
            // Session creation can take a few Composio round trips (with retries).
            upstream_wait: match self.mode() {
                Mode::Composio => COMPOSIO_UPSTREAM_WAIT,
                Mode::Generic => defaults.upstream_wait,
            },
            ..defaults
        }
    }

    /// What a blocked call meets: `[gate]` in Composio mode; generic mode's gate never closes.
    pub(crate) fn wait_mode(&self) -> WaitMode {
        match (self.mode(), self.gate.mode) {
            (Mode::Generic, _) | (_, GateMode::Block) => WaitMode::Off,
            (Mode::Composio, GateMode::Wait) => WaitMode::Hold {
                timeout: self.gate.wait_timeout,
                progress_interval: WAIT_PROGRESS_INTERVAL,
            },
        }
    }

    /// Generic mode's upstream (`None` in Composio mode): the URL, and the headers of
    /// `header_file` then `headers` (a later same-named header replaces an earlier one), with
    /// `${VAR}` expanded from the environment.
    pub(crate) fn generic_target(&self) -> Result<Option<UpstreamTarget>, ConfigError> {
        let Some(upstream) = &self.upstream.url else {
            return Ok(None);
        };
        let url = url::Url::parse(upstream).map_err(|error| {
            ConfigError::new(
                "upstream.url",
                format!("{upstream:?} is not a URL: {error}"),
            )
        })?;
        let lookup = |name: &str| std::env::var(name).ok();
        let mut headers = Vec::new();
        if let Some(path) = &self.header_file {
            let file_error = |error: &dyn fmt::Display| {
                ConfigError::new(
                    "header_file",
                    format!("{} (--header-file): {error}", path.display()),
                )
            };
            let contents = std::fs::read_to_string(path).map_err(|error| file_error(&error))?;
            headers
                .extend(parse_header_file(&contents, &lookup).map_err(|error| file_error(&error))?);
        }
        for line in &self.headers {
            let header = parse_header_arg(line, &lookup)
                .map_err(|error| ConfigError::new("headers", format!("--header: {error}")))?;
            headers.push(header);
        }
        Ok(Some(UpstreamTarget::new(url, header_map(headers))))
    }

    /// The effective configuration as TOML, secrets replaced by `<redacted>`.
    pub(crate) fn to_redacted_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

/// Whether the URL's host is this machine.
fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

fn check_http_url(key: &str, value: &str) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        Ok(url) => Err(ConfigError::new(
            key,
            format!(
                "{value:?} must be an http(s) URL with a host (got scheme {})",
                url.scheme()
            ),
        )),
        Err(error) => Err(ConfigError::new(
            key,
            format!("{value:?} is not a URL: {error}"),
        )),
    }
}

fn check_slug(key: &str, slug: &str) -> Result<(), ConfigError> {
    let valid = !slug.is_empty()
        && slug.len() <= 64
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("{slug:?} is not a toolkit slug (lowercase letters, digits, _ or -)"),
        ))
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Composio => "composio",
            Mode::Generic => "generic",
        })
    }
}

#[cfg(test)]
mod tests;
