//! Processes for the stdio end-to-end tests: `toolgate stdio` driven line by line, the Python
//! SDK driver `tests/e2e/stdio_client.py`, and server-everything on a chosen port (so a test can
//! restart it where the bridge expects it).

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::http::Process;

/// Upper bound for one answer from a child; a liveness bound, not a performance threshold.
const ANSWER: Duration = Duration::from_secs(30);

/// server-everything in Streamable HTTP mode on `port` (`http://127.0.0.1:PORT/mcp`).
pub async fn server_everything_on(port: u16) -> anyhow::Result<Process> {
    let script = crate::peer("node/node_modules/.bin/mcp-server-everything")?;
    let mut command = Command::new("node");
    command
        .arg(script)
        .arg("streamableHttp")
        .env("PORT", port.to_string());
    let mut process = Process::spawn("server-everything", command)?;
    process
        .wait_for_line(|line| line.contains("listening"))
        .await?;
    Ok(process)
}

/// A child with piped stdin/stdout (JSON lines) and captured stderr. Killed on drop.
pub struct LineChild {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: Arc<Mutex<String>>,
    /// The task copying stderr; done once the child closed it.
    stderr_reader: Option<tokio::task::JoinHandle<()>>,
}

impl LineChild {
    /// Spawns `command` with all three standard streams piped.
    pub fn spawn(name: &str, mut command: Command) -> anyhow::Result<Self> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("spawning {name}"))?;
        let stdin = child.stdin.take().context("stdin not piped")?;
        let stdout = BufReader::new(child.stdout.take().context("stdout not piped")?).lines();
        let stderr_pipe = child.stderr.take().context("stderr not piped")?;
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let stderr_reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr_pipe).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut text = sink.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
        Ok(Self {
            name: name.to_owned(),
            child,
            stdin: Some(stdin),
            stdout,
            stderr,
            stderr_reader: Some(stderr_reader),
        })
    }

    /// The child's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// What the child wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Writes one line to the child's stdin.
    pub async fn send_raw(&mut self, line: &str) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin.write_all(line.as_bytes()).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Writes `bytes` and a newline to the child's stdin (for lines that are not UTF-8).
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin already closed")?;
        stdin.write_all(bytes).await?;
        stdin.write_all(b"\n").await?;
        stdin.flush().await?;
        Ok(())
    }

    /// Writes one JSON message line.
    pub async fn send(&mut self, message: &Value) -> anyhow::Result<()> {
        self.send_raw(&message.to_string()).await
    }

    /// The next stdout line (raw), or `None` at EOF.
    pub async fn recv_line(&mut self) -> anyhow::Result<Option<String>> {
        match tokio::time::timeout(ANSWER, self.stdout.next_line()).await {
            Ok(line) => Ok(line?),
            Err(_) => bail!(
                "{}: no stdout line within {ANSWER:?}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
        }
    }

    /// The next stdout line, which must be JSON.
    pub async fn recv(&mut self) -> anyhow::Result<Value> {
        let Some(line) = self.recv_line().await? else {
            bail!("{}: stdout ended; stderr:\n{}", self.name, self.stderr());
        };
        serde_json::from_str(&line)
            .with_context(|| format!("{}: stdout line is not JSON: {line}", self.name))
    }

    /// Reads stdout until the JSON-RPC answer to `id`; returns it.
    pub async fn answer_to(&mut self, id: &Value) -> anyhow::Result<Value> {
        loop {
            let message = self.recv().await?;
            if message.get("id") == Some(id) && message.get("method").is_none() {
                return Ok(message);
            }
        }
    }

    /// Closes stdin (EOF for the child).
    pub fn close_stdin(&mut self) {
        drop(self.stdin.take());
    }

    /// Waits up to `bound` for the child to exit (and for its stderr to be fully read).
    pub async fn wait(&mut self, bound: Duration) -> anyhow::Result<ExitStatus> {
        match tokio::time::timeout(bound, self.child.wait()).await {
            Ok(status) => {
                if let Some(reader) = self.stderr_reader.take() {
                    // A grandchild holding stderr open must not hang the test.
                    let _ = tokio::time::timeout(bound, reader).await;
                }
                Ok(status?)
            }
            Err(_) => bail!(
                "{} did not exit within {bound:?}; stderr:\n{}",
                self.name,
                self.stderr()
            ),
        }
    }

    /// Sends `signal` (e.g. `-TERM`) to the child.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let pid = self.child.id().context("child already reaped")?;
        let status = std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill {signal} {pid} failed");
        }
        Ok(())
    }
}

/// `toolgate stdio <args>`, with the extra environment `envs`.
pub fn toolgate_stdio(args: &[&str], envs: &[(&str, &str)]) -> anyhow::Result<LineChild> {
    let mut command = Command::new(crate::toolgate_bin()?);
    command.arg("stdio").args(args);
    for (name, value) in envs {
        command.env(name, value);
    }
    LineChild::spawn("toolgate stdio", command)
}

/// The Python SDK driver `tests/e2e/stdio_client.py` running `scenario` against
/// `toolgate stdio <toolgate_args>`. Its stdout carries one JSON object per step.
pub fn python_driver(
    scenario: &str,
    toolgate_args: &[&str],
    envs: &[(&str, &str)],
) -> anyhow::Result<LineChild> {
    let python = crate::peer("venv/bin/python")?;
    let script: PathBuf = crate::workspace_root().join("tests/e2e/stdio_client.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .arg(scenario)
        .arg(crate::toolgate_bin()?)
        .arg("stdio")
        .args(toolgate_args);
    for (name, value) in envs {
        command.env(name, value);
    }
    LineChild::spawn("python stdio driver", command)
}

/// Reads the driver's next step and checks it is `step`.
pub async fn expect_step(driver: &mut LineChild, step: &str) -> anyhow::Result<Value> {
    let message = driver.recv().await?;
    if message["step"] != step {
        bail!(
            "expected step {step:?}, got {message}; stderr:\n{}",
            driver.stderr()
        );
    }
    Ok(message)
}

/// Creates a tool-router session in `sandbox` for `user_id`; returns (MCP URL, API key).
pub async fn sandbox_session(
    sandbox: &toolgate_sandbox::Sandbox,
    user_id: &str,
) -> anyhow::Result<(String, String)> {
    let api_key = toolgate_sandbox::DEMO_API_KEY;
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()?
        .post(format!(
            "{}/api/v3.1/tool_router/session",
            sandbox.base_url()
        ))
        .header("x-api-key", api_key)
        .json(&serde_json::json!({ "user_id": user_id }))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("creating a sandbox session answered {}", response.status());
    }
    let session: Value = response.json().await?;
    let url = session["mcp"]["url"]
        .as_str()
        .context("no mcp.url in the session")?
        .to_owned();
    Ok((url, api_key.to_owned()))
}
