//! Helpers for the deploy/ tests: the offline linters installed with the peers, deploy/ files
//! read as JSON (YAML and TOML through `tests/deploy/to_json.py`, the Dockerfile's final stage
//! through `tests/deploy/dockerfile.py`), and the binary started the way the image starts it.

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::process::Command;

use crate::http::Process;

/// `<root>/deploy/<relative>`.
pub fn deploy_file(relative: &str) -> PathBuf {
    crate::workspace_root().join("deploy").join(relative)
}

/// A tool from the peers' Python venv (`hadolint`, `kubernetes-validate`, `check-jsonschema`,
/// `python`), failing with an install hint when missing.
pub fn venv_tool(name: &str) -> anyhow::Result<PathBuf> {
    crate::peer(&format!("venv/bin/{name}"))
}

/// Runs `program args` to completion (blocking pool) and returns its output.
pub async fn output(program: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let mut command = std::process::Command::new(program);
    command.args(args).stdin(std::process::Stdio::null());
    let shown = format!("{} {}", program.display(), args.join(" "));
    tokio::task::spawn_blocking(move || command.output())
        .await?
        .with_context(|| format!("running {shown}"))
}

/// Both output streams of `output`, for assertion messages.
pub fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A YAML file's documents or a TOML file's table, as JSON.
pub async fn read_structured(path: &Path) -> anyhow::Result<Value> {
    let python = venv_tool("python")?;
    let script = crate::workspace_root().join("tests/deploy/to_json.py");
    let path = path.to_str().context("non-UTF-8 path")?;
    let out = output(&python, &[script.to_str().context("path")?, path]).await?;
    if !out.status.success() {
        bail!("reading {path}: {}", text(&out));
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("JSON from {path}"))
}

/// TOML text (e.g. a ConfigMap's `toolgate.toml`) as JSON.
pub async fn parse_toml(toml_text: &str) -> anyhow::Result<Value> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("snippet.toml");
    std::fs::write(&path, toml_text)?;
    read_structured(&path).await
}

/// The final stage of deploy/Dockerfile (see `tests/deploy/dockerfile.py image`).
pub async fn image_config() -> anyhow::Result<Value> {
    let script = crate::workspace_root().join("tests/deploy/dockerfile.py");
    let dockerfile = deploy_file("Dockerfile");
    let python = PathBuf::from("python3");
    let out = output(
        &python,
        &[
            script.to_str().context("path")?,
            "image",
            dockerfile.to_str().context("path")?,
        ],
    )
    .await?;
    if !out.status.success() {
        bail!("dockerfile.py image: {}", text(&out));
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The binary the image contains: `$TOOLGATE_CONTAINER_BIN` (set by tests/run.sh after
/// `tests/deploy/build.sh` ran the Dockerfile's build stage in a clean clone), else the
/// workspace's own build of the same sources.
pub fn container_bin() -> anyhow::Result<PathBuf> {
    match std::env::var_os("TOOLGATE_CONTAINER_BIN") {
        Some(path) => {
            let path = PathBuf::from(path);
            if !path.is_file() {
                bail!(
                    "TOOLGATE_CONTAINER_BIN={} does not exist: run tests/deploy/build.sh",
                    path.display()
                );
            }
            Ok(path)
        }
        None => crate::toolgate_bin(),
    }
}

/// The image's process: its ENTRYPOINT + CMD (or `args` instead of CMD), its ENV plus
/// `extra_env`, and nothing inherited, in `workdir` (standing in for the image's WORKDIR).
pub struct ContainerRun {
    /// The image's final stage.
    pub image: Value,
    /// Environment: image ENV, then the run-time additions.
    pub env: Vec<(String, String)>,
    /// The directory standing in for WORKDIR (where `toolgate.toml` would be mounted).
    pub workdir: PathBuf,
}

impl ContainerRun {
    /// The image's environment with `extra_env` on top (later entries win).
    pub fn new(image: Value, extra_env: &[(String, String)], workdir: &Path) -> Self {
        let mut env: Vec<(String, String)> = image["env"]
            .as_object()
            .map(|map| {
                map.iter()
                    .map(|(key, value)| (key.clone(), value.as_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        for (key, value) in extra_env {
            env.retain(|(existing, _)| existing != key);
            env.push((key.clone(), value.clone()));
        }
        Self {
            image,
            env,
            workdir: workdir.to_path_buf(),
        }
    }

    /// The value of `key` in this run's environment.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(existing, _)| existing == key)
            .map(|(_, value)| value.as_str())
    }

    /// Sets (replaces) one variable.
    pub fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(existing, _)| existing != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// A command for `argv` (argv[0] is an in-image path of the binary, mapped to the real
    /// one) with exactly this environment and working directory.
    pub fn command(&self, argv: &[String]) -> anyhow::Result<std::process::Command> {
        let entrypoint = self.image["entrypoint"][0]
            .as_str()
            .context("image has no ENTRYPOINT")?;
        let (program, rest) = argv.split_first().context("empty argv")?;
        if program != entrypoint {
            bail!("{program} is not the image's binary {entrypoint}");
        }
        let mut command = std::process::Command::new(container_bin()?);
        command
            .args(rest)
            .env_clear()
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .current_dir(&self.workdir)
            .stdin(std::process::Stdio::null());
        Ok(command)
    }

    /// ENTRYPOINT + CMD.
    pub fn default_argv(&self) -> Vec<String> {
        strings(&self.image["entrypoint"])
            .into_iter()
            .chain(strings(&self.image["cmd"]))
            .collect()
    }

    /// Starts ENTRYPOINT + CMD and waits for the listening line; returns the process and the
    /// bound port.
    pub async fn start(&self) -> anyhow::Result<(Process, u16)> {
        let command = Command::from(self.command(&self.default_argv())?);
        let mut process = Process::spawn("toolgate (container)", command)?;
        let line = process
            .wait_for_line(|line| line.contains("listening on http://"))
            .await?;
        let port = line
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split([' ', '(', '"']).next())
            .and_then(|addr| addr.rsplit(':').next())
            .and_then(|port| port.parse().ok())
            .with_context(|| format!("no port on {line:?}"))?;
        Ok((process, port))
    }

    /// Runs `argv` to completion; returns its output.
    pub async fn run(&self, argv: &[String]) -> anyhow::Result<Output> {
        let mut command = self.command(argv)?;
        tokio::task::spawn_blocking(move || command.output())
            .await?
            .context("running the container command")
    }
}

/// A JSON array of strings as a Vec (empty when not an array).
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses a Kubernetes/compose duration-ish value (`10s`, `1m30s`, `20s`) into seconds.
pub fn seconds(text: &str) -> anyhow::Result<u64> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let value: u64 = number
            .parse()
            .with_context(|| format!("duration {text:?}"))?;
        number.clear();
        total += match c {
            'h' => value * 3600,
            'm' => value * 60,
            's' => value,
            _ => bail!("unsupported unit {c:?} in {text:?}"),
        };
    }
    if !number.is_empty() {
        bail!("duration {text:?} lacks a unit");
    }
    Ok(total)
}
