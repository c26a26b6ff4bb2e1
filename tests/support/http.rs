//! Processes for the HTTP end-to-end tests: `toolgate serve` and server-everything, each a
//! child process killed when dropped, with its stderr captured line by line.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// How long a child may take to print its ready line.
const STARTUP: Duration = Duration::from_secs(30);

/// A child process with captured stderr. Killed on drop.
pub struct Process {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    changes: watch::Receiver<usize>,
    name: String,
}

impl Process {
    /// Spawns `command` (stdout discarded, stderr captured).
    pub fn spawn(name: &str, mut command: Command) -> anyhow::Result<Self> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        let stderr = child.stderr.take().context("stderr not captured")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (sender, changes) = watch::channel(0);
        let sink = lines.clone();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                let count = {
                    let mut lines = sink.lock().unwrap();
                    lines.push(line);
                    lines.len()
                };
                sender.send_replace(count);
            }
            // Closing: wake waiters so they can report the exit.
            sender.send_modify(|count| *count += 0);
        });
        Ok(Self {
            child,
            lines,
            changes,
            name: name.to_owned(),
        })
    }

    /// The process id (for reading its `/proc` entries), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Waits (bounded) for a stderr line matching `wanted` and returns it.
    pub async fn wait_for_line(&mut self, wanted: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + STARTUP;
        loop {
            if let Some(line) = self.lines.lock().unwrap().iter().find(|line| wanted(line)) {
                return Ok(line.clone());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} before it was ready; stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            match tokio::time::timeout_at(deadline, self.changes.changed()).await {
                Ok(Ok(())) => {}
                // The stderr reader ended: poll for the exit status a few more times.
                Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(_) => bail!(
                    "{} did not become ready; stderr:\n{}",
                    self.name,
                    self.stderr()
                ),
            }
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub async fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().context("process already reaped")?;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        tokio::time::timeout(STARTUP, self.child.wait())
            .await
            .with_context(|| format!("{} did not exit after SIGTERM", self.name))?
            .map_err(Into::into)
    }

    /// Waits (bounded) for the process to exit on its own.
    pub async fn wait(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        tokio::time::timeout(STARTUP, self.child.wait())
            .await
            .with_context(|| format!("{} did not exit", self.name))?
            .map_err(Into::into)
    }
}

/// `@modelcontextprotocol/server-everything` in Streamable HTTP mode on a free port.
pub struct ServerEverything {
    pub process: Process,
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
}

impl ServerEverything {
    pub async fn start() -> anyhow::Result<Self> {
        let script = crate::peer("node/node_modules/.bin/mcp-server-everything")?;
        let port = crate::free_port()?;
        let mut command = Command::new("node");
        command
            .arg(script)
            .arg("streamableHttp")
            .env("PORT", port.to_string());
        let mut process = Process::spawn("server-everything", command)?;
        process
            .wait_for_line(|line| line.contains("listening"))
            .await?;
        Ok(Self {
            process,
            url: format!("http://127.0.0.1:{port}/mcp"),
        })
    }
}

/// `toolgate serve` on 127.0.0.1 port 0 (its listening URL is read from stderr).
pub struct ToolgateServe {
    pub process: Process,
    /// The MCP endpoint, e.g. `http://127.0.0.1:PORT/mcp`.
    pub url: String,
}

impl ToolgateServe {
    /// Starts `toolgate serve --listen 127.0.0.1:0 <args>` with extra environment `envs`.
    pub async fn start(args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_in(args, envs, None).await
    }

    /// As [`ToolgateServe::start`], in working directory `dir`.
    pub async fn start_in(
        args: &[&str],
        envs: &[(&str, &str)],
        dir: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(crate::toolgate_bin()?);
        command
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args);
        command.env_remove("TOOLGATE_TOKEN");
        for (name, value) in envs {
            command.env(name, value);
        }
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut process = Process::spawn("toolgate serve", command)?;
        let line = process
            .wait_for_line(|line| line.contains("serving MCP at "))
            .await?;
        let url = line
            .split("serving MCP at ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .context("no URL on the ready line")?
            .to_owned();
        Ok(Self { process, url })
    }
}

/// Runs `toolgate serve` with `args` and expects it to exit at once; returns (code, stderr).
pub async fn serve_exit(args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<(i32, String)> {
    let mut command = std::process::Command::new(crate::toolgate_bin()?);
    command.arg("serve").args(args).env_remove("TOOLGATE_TOKEN");
    for (name, value) in envs {
        command.env(name, value);
    }
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// A hand-driven Streamable HTTP client (reqwest), for checks below the level of an SDK.
pub struct RawMcp {
    pub client: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    /// Headers sent on every request (e.g. a test `Authorization`).
    pub extra: Vec<(String, String)>,
    /// The protocol version offered at `initialize` and sent after it.
    pub protocol_version: String,
    /// The client capabilities declared at `initialize`.
    pub capabilities: serde_json::Value,
}

impl RawMcp {
    pub fn new(url: &str) -> Self {
        Self {
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            url: url.to_owned(),
            session: None,
            extra: Vec::new(),
            protocol_version: "2025-11-25".to_owned(),
            capabilities: serde_json::json!({}),
        }
    }

    /// A POST with the MCP headers (Accept both, JSON body, session and version when known).
    pub fn post(&self, body: &serde_json::Value) -> reqwest::RequestBuilder {
        let mut request = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .body(body.to_string());
        if let Some(session) = &self.session {
            request = request
                .header("Mcp-Session-Id", session)
                .header("MCP-Protocol-Version", &self.protocol_version);
        }
        for (name, value) in &self.extra {
            request = request.header(name, value);
        }
        request
    }

    /// `initialize` + `notifications/initialized`; remembers the session id.
    pub async fn initialize(&mut self) -> anyhow::Result<()> {
        let init = serde_json::json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion": self.protocol_version,"capabilities": self.capabilities,"clientInfo":{"name":"e2e","version":"0"}}});
        let response = self.post(&init).send().await?;
        if !response.status().is_success() {
            bail!("initialize answered {}", response.status());
        }
        self.session = response
            .headers()
            .get("mcp-session-id")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let _ = response.bytes().await?;
        let initialized = serde_json::json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        let status = self.post(&initialized).send().await?.status();
        if status != reqwest::StatusCode::ACCEPTED {
            bail!("notifications/initialized answered {status}");
        }
        Ok(())
    }
}

/// The JSON-RPC messages in an SSE or JSON body.
pub fn messages(body: &str) -> Vec<serde_json::Value> {
    if body.trim_start().starts_with('{') || body.trim_start().starts_with('[') {
        return serde_json::from_str(body).into_iter().collect();
    }
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            serde_json::from_str(&data.join("\n")).ok()
        })
        .collect()
}

/// An upstream written with the Python `mcp` 2.x SDK (stateful by default; it speaks
/// 2026-07-28 to clients that ask for it), with tools `echo` and `headers` (the HTTP headers
/// it received), on a free port.
pub struct PythonUpstream {
    pub process: Process,
    /// `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    _dir: tempfile::TempDir,
}

impl PythonUpstream {
    pub async fn start() -> anyhow::Result<Self> {
        let python = crate::peer("venv/bin/python")?;
        let dir = tempfile::tempdir()?;
        let script = dir.path().join("upstream.py");
        std::fs::write(
            &script,
            "import sys\n\
             from mcp.server.mcpserver import MCPServer, Context\n\
             mcp = MCPServer('py-upstream')\n\
             @mcp.tool()\n\
             def echo(message: str) -> str:\n    return f'Echo: {message}'\n\
             @mcp.tool()\n\
             def headers(ctx: Context) -> dict:\n    return dict(ctx.headers or {})\n\
             mcp.run('streamable-http', host='127.0.0.1', port=int(sys.argv[1]))\n",
        )?;
        let port = crate::free_port()?;
        let mut command = Command::new(python);
        command.arg(&script).arg(port.to_string());
        let mut process = Process::spawn("python upstream", command)?;
        process
            .wait_for_line(|line| line.contains("Uvicorn running"))
            .await?;
        Ok(Self {
            process,
            url: format!("http://127.0.0.1:{port}/mcp"),
            _dir: dir,
        })
    }
}
