//! The README and `config/toolgate.example.toml` stay true to the binary.
//!
//! * Every subcommand `toolgate -h` lists has a `### \`toolgate NAME\`` section in the README's
//!   command reference, and that section names exactly the flags (and positional arguments)
//!   the subcommand's `-h` prints: a flag missing from the README fails, and so does a README
//!   flag the command does not have.
//! * The configuration keys the code reads are learned from the binary itself, not from a list
//!   kept by hand: the TOML file rejects unknown keys, and serde's error names every field it
//!   expected, so probing each table with a key that cannot exist yields the real schema.
//!   That set must equal the keys documented in the example file (set or commented out, in
//!   their sections) and the keys of the README's configuration reference table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context as _, bail, ensure};

const README: &str = include_str!("../../README.md");
const EXAMPLE: &str = include_str!("../../config/toolgate.example.toml");

/// A name no configuration table will ever have.
const PROBE_KEY: &str = "zz_docs_probe_key";

/// The binary with no `TOOLGATE_*`/`COMPOSIO_*` variables of the caller, run in `dir`.
fn toolgate(dir: &Path, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let mut command = toolgate_tests::toolgate_command()?;
    command
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("running toolgate {args:?}"))
}

/// The lines of a `-h` block (`Options:`, `Arguments:`, `Commands:`) up to the next blank line.
fn help_block<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|line| line.trim() != title)
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .collect()
}

/// Long flags (without `--help`/`--version`) and positional argument names of one `-h` output.
fn flags_and_args(help: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let flags = help_block(help, "Options:")
        .into_iter()
        .filter(|line| line.trim_start().starts_with('-'))
        .filter_map(|line| {
            line.split_whitespace()
                .find(|word| word.starts_with("--"))
                .map(|word| word.trim_end_matches(',').to_owned())
        })
        .filter(|flag| flag != "--help" && flag != "--version")
        .collect();
    let args = help_block(help, "Arguments:")
        .into_iter()
        .filter_map(|line| line.split_whitespace().next())
        .map(|word| {
            word.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .to_owned()
        })
        .collect();
    (flags, args)
}

/// The text of the README's `heading` section (a `## ` line), up to the next `## `.
fn readme_section(heading: &str) -> anyhow::Result<&'static str> {
    let start = README
        .find(&format!("\n{heading}\n"))
        .with_context(|| format!("README has no `{heading}` section"))?;
    let body = &README[start + heading.len() + 2..];
    let end = body.find("\n## ").unwrap_or(body.len());
    Ok(&body[..end])
}

/// `### \`toolgate NAME\`` subsections of the command reference: name → text.
fn readme_commands() -> anyhow::Result<BTreeMap<String, &'static str>> {
    let reference = readme_section("## Command reference")?;
    let mut commands = BTreeMap::new();
    let mut rest = reference;
    while let Some(start) = rest.find("### `toolgate ") {
        let after = &rest[start + "### `toolgate ".len()..];
        let name_end = after.find('`').context("unterminated command heading")?;
        let name = after[..name_end].to_owned();
        let body = &after[name_end..];
        let end = body.find("\n#").unwrap_or(body.len());
        commands.insert(name, &body[..end]);
        rest = &body[end..];
    }
    Ok(commands)
}

/// Every `--flag` spelled in a README text.
fn flags_in(text: &str) -> BTreeSet<String> {
    let mut flags = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("--") {
        let name: String = rest[start + 2..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')
            .collect();
        if name.starts_with(|c: char| c.is_ascii_lowercase()) {
            flags.insert(format!("--{}", name.trim_end_matches('-')));
        }
        rest = &rest[start + 2 + name.len()..];
    }
    flags
}

#[test]
fn readme_command_reference_matches_every_help() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let top = toolgate(dir.path(), &["-h"])?;
    let top = String::from_utf8(top.stdout)?;
    let subcommands: Vec<String> = help_block(&top, "Commands:")
        .into_iter()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    ensure!(subcommands.len() >= 8, "too few subcommands parsed: {top}");
    let documented = readme_commands()?;
    let mut problems = Vec::new();
    for name in &subcommands {
        let output = toolgate(dir.path(), &[name, "-h"])?;
        let help = String::from_utf8(output.stdout)?;
        let (flags, args) = flags_and_args(&help);
        let Some(section) = documented.get(name) else {
            problems.push(format!("README documents no `toolgate {name}`"));
            continue;
        };
        let readme_flags = flags_in(section);
        for flag in flags.difference(&readme_flags) {
            problems.push(format!("`toolgate {name} {flag}` is not in the README"));
        }
        for flag in readme_flags.difference(&flags) {
            problems.push(format!(
                "the README lists `{flag}` for `toolgate {name}`, which has no such flag"
            ));
        }
        for arg in args.iter().filter(|arg| !section.contains(arg.as_str())) {
            problems.push(format!(
                "`toolgate {name}`'s argument {arg} is not in the README"
            ));
        }
    }
    for name in documented.keys().filter(|name| !subcommands.contains(name)) {
        problems.push(format!(
            "the README documents `toolgate {name}`, which does not exist"
        ));
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// What a key of the configuration is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    /// A value (string, number, list).
    Leaf,
    /// A table of arbitrary names (`[session.auth_configs]`).
    Map,
}

/// What the binary says about a TOML table holding only [`PROBE_KEY`].
enum Probe {
    /// A table with these fields (it rejected the probe, naming what it expected).
    Section(Vec<String>),
    /// A table of arbitrary names: the probe key was taken as an entry.
    Map,
    /// Not a table at all.
    Leaf,
}

fn probe(dir: &Path, table: &str) -> anyhow::Result<Probe> {
    let file = dir.join("probe.toml");
    let header = if table.is_empty() {
        String::new()
    } else {
        format!("[{table}]\n")
    };
    std::fs::write(&file, format!("{header}{PROBE_KEY} = 1\n"))?;
    let output = toolgate(dir, &["config", "--config", &file.to_string_lossy()])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        !output.status.success(),
        "a probe key was accepted in [{table}]"
    );
    let dotted = if table.is_empty() {
        PROBE_KEY.to_owned()
    } else {
        format!("{table}.{PROBE_KEY}")
    };
    if let Some((_, expected)) = stderr
        .lines()
        .find(|line| line.contains("unknown field"))
        .and_then(|line| line.split_once("expected"))
    {
        // serde lists the fields in backticks: `one of `a`, `b``, ``a` or `b``, `a`.
        let fields = expected
            .split('`')
            .filter(|word| {
                !word.is_empty()
                    && word
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
            .map(str::to_owned)
            .collect();
        return Ok(Probe::Section(fields));
    }
    Ok(if stderr.contains(&format!("`{dotted}`")) {
        Probe::Map
    } else {
        Probe::Leaf
    })
}

/// Every key the binary's configuration file accepts, dotted, learned by probing.
fn code_keys(dir: &Path) -> anyhow::Result<BTreeMap<String, KeyKind>> {
    let mut keys = BTreeMap::new();
    let mut tables = vec![String::new()];
    while let Some(table) = tables.pop() {
        let Probe::Section(fields) = probe(dir, &table)? else {
            bail!("[{table}] is not a section");
        };
        ensure!(!fields.is_empty(), "no fields parsed for [{table}]");
        for field in fields {
            let key = if table.is_empty() {
                field
            } else {
                format!("{table}.{field}")
            };
            match probe(dir, &key)? {
                Probe::Section(_) => tables.push(key),
                Probe::Map => {
                    keys.insert(key, KeyKind::Map);
                }
                Probe::Leaf => {
                    keys.insert(key, KeyKind::Leaf);
                }
            }
        }
    }
    Ok(keys)
}

/// Keys the example file documents, set or commented out, with their section.
fn example_keys(code: &BTreeMap<String, KeyKind>) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    let mut section = String::new();
    for line in EXAMPLE.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            keys.insert(section.clone());
            continue;
        }
        if code.get(&section) == Some(&KeyKind::Map) {
            continue; // entries of a map are examples, not keys
        }
        let text = line.trim_start_matches('#').trim_start();
        let Some((name, _)) = text.split_once(" = ") else {
            continue;
        };
        if !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            keys.insert(if section.is_empty() {
                name.to_owned()
            } else {
                format!("{section}.{name}")
            });
        }
    }
    // A section header is documentation of its table, not a key of its own.
    keys.retain(|key| code.contains_key(key) || !is_section_of(key, code));
    keys
}

fn is_section_of(key: &str, code: &BTreeMap<String, KeyKind>) -> bool {
    code.keys().any(|k| k.starts_with(&format!("{key}.")))
}

/// First-column keys (`` `a.b` ``) of the README's configuration reference table.
fn readme_keys() -> anyhow::Result<BTreeSet<String>> {
    let section = readme_section("## Configuration reference")?;
    Ok(section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(key, _)| key.to_owned())
        .collect())
}

#[test]
fn example_file_and_readme_name_every_config_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let code = code_keys(dir.path())?;
    ensure!(
        code.contains_key("gate.mode") && code.contains_key("user_id"),
        "probing found too little: {code:?}"
    );
    let code_set: BTreeSet<String> = code.keys().cloned().collect();
    let example = example_keys(&code);
    let readme = readme_keys()?;
    let mut problems = Vec::new();
    for key in code_set.difference(&example) {
        problems.push(format!(
            "config/toolgate.example.toml does not document `{key}`"
        ));
    }
    for key in example.difference(&code_set) {
        problems.push(format!(
            "config/toolgate.example.toml documents `{key}`, which the binary does not read"
        ));
    }
    for key in code_set.difference(&readme) {
        problems.push(format!(
            "the README's configuration reference lacks `{key}`"
        ));
    }
    for key in readme.difference(&code_set) {
        problems.push(format!(
            "the README's configuration reference lists `{key}`, which the binary does not read"
        ));
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}

/// `rust-version` claims what is tested: the toolchain `rust-toolchain.toml` pins, which is
/// also the version the README asks for.
#[test]
fn rust_version_is_the_tested_toolchain() -> anyhow::Result<()> {
    let root = toolgate_tests::workspace_root();
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let toolchain = std::fs::read_to_string(root.join("rust-toolchain.toml"))?;
    let quoted = |text: &str, key: &str| -> anyhow::Result<String> {
        let line = text
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("{key} =")))
            .with_context(|| format!("no `{key}`"))?;
        Ok(line.split('"').nth(1).unwrap_or_default().to_owned())
    };
    let channel = quoted(&toolchain, "channel")?;
    let rust_version = quoted(&manifest, "rust-version")?;
    ensure!(
        channel == rust_version || channel.starts_with(&format!("{rust_version}.")),
        "rust-version {rust_version} is not the pinned toolchain {channel}"
    );
    ensure!(
        README.contains(&format!("Rust {rust_version}")),
        "the README does not ask for Rust {rust_version}"
    );
    Ok(())
}
