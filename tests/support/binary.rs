//! Helpers for the end-to-end tests of the binary in Composio mode: a sandbox with a
//! distinctive API key (so tests can assert it never leaks), `toolgate serve` against it, the
//! sandbox's control plane, and bounded polling.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::process::Command;
use toolgate_sandbox::{Sandbox, SandboxConfig};

use crate::http::{Process, RawMcp, messages};

/// The API key the e2e sandbox accepts; every test asserts it appears in no output.
pub const E2E_API_KEY: &str = "sk_e2e_secret_9f27c1d4b8";

/// Upper bound for anything these tests wait for (tracker polls run every second).
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A sandbox on its own thread and runtime that accepts [`E2E_API_KEY`].
pub fn sandbox() -> anyhow::Result<Sandbox> {
    Sandbox::start_detached(SandboxConfig {
        api_keys: vec![E2E_API_KEY.to_owned()],
        ..SandboxConfig::default()
    })
    .context("starting the sandbox")
}

/// Polls `check` until it yields `Some`, for at most [`PATIENCE`].
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The environment for toolgate against `sandbox`: key, base URL, user, debug logs.
pub fn composio_env(sandbox: &Sandbox, user: &str) -> Vec<(String, String)> {
    vec![
        ("COMPOSIO_API_KEY".into(), E2E_API_KEY.into()),
        ("COMPOSIO_BASE_URL".into(), sandbox.base_url()),
        ("TOOLGATE_USER_ID".into(), user.into()),
        // Debug logs: the most verbose output is the best place to look for a leaked key.
        ("TOOLGATE_LOG_LEVEL".into(), "debug".into()),
        // Remembered sessions stay with this test's sandbox, out of the real home.
        (
            "XDG_STATE_HOME".into(),
            std::env::temp_dir()
                .join(format!("toolgate-e2e-state-{}", sandbox.addr().port()))
                .display()
                .to_string(),
        ),
    ]
}

/// The environment of a multi-user gateway against `sandbox`: [`composio_env`] without
/// `TOOLGATE_USER_ID` (every request names its own user), plus `extra`.
pub fn multi_user_env(sandbox: &Sandbox, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = composio_env(sandbox, "unused");
    env.retain(|(name, _)| name != "TOOLGATE_USER_ID");
    env.extend(
        extra
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
    );
    env
}

fn clean_command(envs: &[(String, String)]) -> anyhow::Result<std::process::Command> {
    let mut command = crate::toolgate_command()?;
    for (name, value) in envs {
        command.env(name, value);
    }
    Ok(command)
}

/// `toolgate serve` in Composio mode on 127.0.0.1 port 0.
pub struct Gateway {
    /// The process (stderr captured).
    pub process: Process,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// A plain HTTP client (no redirects followed).
    pub http: reqwest::Client,
}

impl Gateway {
    /// Starts `toolgate serve --listen 127.0.0.1:0 <args>` with exactly `envs` (inherited
    /// `TOOLGATE_*`/`COMPOSIO_*` variables removed).
    pub async fn start(args: &[&str], envs: &[(String, String)]) -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1:0", args, envs).await
    }

    /// [`Gateway::start`] on `listen`, for a test whose configuration must name the port
    /// before the gateway starts (e.g. `auth.jwt.resource`).
    pub async fn start_on(
        listen: &str,
        args: &[&str],
        envs: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let command = clean_command(envs)?;
        let mut command = Command::from(command);
        command.arg("serve").args(["--listen", listen]).args(args);
        let mut process = Process::spawn("toolgate serve", command)?;
        let line = process
            .wait_for_line(|line| line.contains("toolgate: listening on "))
            .await?;
        let base = line
            .split("listening on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .context("no URL on the listening line")?
            .to_owned();
        Ok(Self {
            process,
            base,
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        })
    }

    /// The MCP endpoint URL.
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// GET a path; returns (status, body).
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// `/readyz` as (status, JSON).
    pub async fn readyz(&self) -> anyhow::Result<(u16, Value)> {
        let (status, body) = self.get("/readyz").await?;
        Ok((status, serde_json::from_str(&body)?))
    }

    /// Waits until `/readyz` reports `gate` (`open`, `closed`, `starting`).
    pub async fn wait_for_gate(&self, gate: &str) -> anyhow::Result<Value> {
        eventually(&format!("gate {gate}"), || async {
            let (_, body) = self.readyz().await?;
            Ok((body["gate"] == gate).then_some(body))
        })
        .await
    }

    /// An initialized MCP client for this gateway.
    pub async fn mcp(&self) -> anyhow::Result<RawMcp> {
        let mut client = RawMcp::new(&self.mcp_url());
        client.initialize().await?;
        Ok(client)
    }
}

/// Calls `tool` with `arguments` and returns the JSON-RPC answer with id `id`.
pub async fn call_tool(
    client: &RawMcp,
    id: u64,
    tool: &str,
    arguments: Value,
) -> anyhow::Result<Value> {
    let request = json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":arguments}});
    let response = client.post(&request).send().await?;
    let body = response.text().await?;
    messages(&body)
        .into_iter()
        .find(|message| message["id"] == json!(id))
        .with_context(|| format!("no answer with id {id} in {body}"))
}

/// The text of a tool result.
pub fn result_text(answer: &Value) -> String {
    content_text(&answer["result"])
}

/// The text items of a tool result's `content`, one per line.
pub fn content_text(result: &Value) -> String {
    result["content"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// Every Connect Link (`.../link/ln_...`) in `text`, in order.
pub fn links_in(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>')
        .filter(|word| word.starts_with("http") && word.contains("/link/ln_"))
        .map(|word| word.trim_end_matches(['.', ',', ')']).to_owned())
        .collect()
}

/// Answers a Connect Link through the sandbox's control plane (`allow` or `deny`).
pub async fn answer_link(sandbox: &Sandbox, link: &str, verb: &str) -> anyhow::Result<()> {
    let token = link.rsplit('/').next().context("link without a token")?;
    control(sandbox, &format!("/_sandbox/links/{token}/{verb}"), None).await
}

/// POSTs to the sandbox control plane, failing on a non-2xx/3xx status.
pub async fn control(sandbox: &Sandbox, path: &str, body: Option<Value>) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let mut request = client.post(format!("{}{path}", sandbox.base_url()));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await?;
    if !(response.status().is_success() || response.status().is_redirection()) {
        bail!(
            "{path} answered {}: {}",
            response.status(),
            response.text().await?
        );
    }
    Ok(())
}

/// Runs the binary with `args` and exactly `envs`; returns (exit code, stdout, stderr).
pub async fn run(
    args: &[&str],
    envs: &[(String, String)],
) -> anyhow::Result<(i32, String, String)> {
    let mut command = clean_command(envs)?;
    command.args(args).stdin(std::process::Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// Fails when the API key appears in `text` (named `what` in the message).
pub fn assert_no_key(what: &str, text: &str) {
    assert!(
        !text.contains(E2E_API_KEY),
        "the Composio API key leaked into {what}:\n{text}"
    );
}
