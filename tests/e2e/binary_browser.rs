//! The connections flow in a real browser: headless Chromium (Debian's `chromium`) driven by
//! playwright-core (pinned in tests/peers/package.json) through `browser_flow.mjs`.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context as _, bail};
use toolgate_tests::binary::{Gateway, assert_no_key, composio_env, sandbox};

/// The Chromium binary; the test fails (never skips) when it is missing.
fn chromium() -> anyhow::Result<String> {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    if !Path::new(&path).is_file() {
        bail!(
            "Chromium is missing at {path}: run tests/peers/install.sh (apt-get install chromium)"
        );
    }
    Ok(path)
}

/// Width, height and the number of distinct colours of a PNG (RGB/RGBA, 8-bit).
fn png_facts(bytes: &[u8]) -> anyhow::Result<(u32, u32, usize)> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info()?;
    let mut pixels = vec![0; reader.output_buffer_size().context("image too large")?];
    let frame = reader.next_frame(&mut pixels)?;
    let channels = frame.color_type.samples();
    if frame.bit_depth != png::BitDepth::Eight || channels < 3 {
        bail!(
            "unexpected PNG format {:?} {:?}",
            frame.color_type,
            frame.bit_depth
        );
    }
    let mut colours = std::collections::HashSet::new();
    for pixel in pixels[..frame.buffer_size()].chunks_exact(channels) {
        colours.insert((pixel[0], pixel[1], pixel[2]));
    }
    Ok((frame.width, frame.height, colours.len()))
}

/// How many pixels of a PNG are within a small distance of `colour`.
fn pixels_near(bytes: &[u8], colour: (u8, u8, u8)) -> anyhow::Result<usize> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info()?;
    let mut pixels = vec![0; reader.output_buffer_size().context("image too large")?];
    let frame = reader.next_frame(&mut pixels)?;
    let channels = frame.color_type.samples();
    if frame.bit_depth != png::BitDepth::Eight || channels < 3 {
        bail!("unexpected PNG format {:?}", frame.color_type);
    }
    let near = |a: u8, b: u8| a.abs_diff(b) <= 12;
    Ok(pixels[..frame.buffer_size()]
        .chunks_exact(channels)
        .filter(|p| near(p[0], colour.0) && near(p[1], colour.1) && near(p[2], colour.2))
        .count())
}

#[tokio::test(flavor = "multi_thread")]
async fn browser_connects_a_toolkit() -> anyhow::Result<()> {
    let chromium = chromium()?;
    let playwright = toolgate_tests::peer("node/node_modules/playwright-core")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/browser_flow.mjs");
    let sandbox = sandbox()?;
    let mut env = composio_env(&sandbox, "browser-user");
    env.push(("TOOLGATE_REQUIRE".into(), "gmail,github".into()));
    let mut gateway = Gateway::start(&[], &env).await?;
    gateway.wait_for_gate("closed").await?;

    let work = tempfile::tempdir()?;
    let screenshot = work.path().join("connections.png");
    let logo_shot = work.path().join("gmail-logo.png");
    let profile = work.path().join("profile");
    let port_of = |url: &str| {
        url.rsplit(':')
            .next()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_owned()
    };
    let allowed_ports = format!(
        "{},{}",
        port_of(&gateway.base),
        port_of(&sandbox.base_url())
    );
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&playwright)
        .arg(format!("{}/connections", gateway.base))
        .arg(&screenshot)
        .arg(&profile)
        .arg(&logo_shot)
        .env("CHROMIUM", &chromium)
        .env("ALLOWED_PORTS", allowed_ports)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), output).await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser script failed: {stdout}\n{stderr}"
    );
    let seen: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .last()
            .context("the script printed nothing")?,
    )?;
    assert_eq!(seen["initialStatus"], "pending", "{seen}");
    assert!(
        seen["urls"][1]
            .as_str()
            .unwrap_or("")
            .starts_with(&sandbox.base_url()),
        "{seen}"
    );
    assert_eq!(seen["linkPageMentionsGmail"], true, "{seen}");
    let callback = seen["urls"][2].as_str().unwrap_or("");
    assert!(
        callback.starts_with(&format!("{}/callback?", gateway.base)),
        "{seen}"
    );
    assert!(callback.contains("status=success"), "{seen}");
    assert_eq!(seen["callbackTitle"], "Connected", "{seen}");
    assert_eq!(
        seen["stillPending"],
        serde_json::json!(["github"]),
        "the callback names what is still pending: {seen}"
    );
    assert_eq!(seen["finalStatus"], "connected", "{seen}");
    assert_eq!(seen["finalBadge"], "Connected", "{seen}");
    let (_, ready) = gateway.readyz().await?;
    assert_eq!(ready["gate"], "closed", "github is still pending: {ready}");

    // The logo is Composio's `meta.logo` (the sandbox's drawn Gmail mark), and it rendered.
    assert_eq!(
        seen["logo"]["src"],
        format!("{}/_sandbox/logos/gmail.svg", sandbox.base_url()),
        "{seen}"
    );
    assert_eq!(seen["logo"]["complete"], true, "{seen}");
    assert!(seen["logo"]["naturalWidth"].as_u64() > Some(0), "{seen}");
    let logo = std::fs::read(&logo_shot)?;
    let red = pixels_near(&logo, (0xEA, 0x43, 0x35))?;
    assert!(
        red > 20,
        "only {red} pixels of the Gmail mark's red: the logo did not render (letter fallback?)"
    );

    let png = std::fs::read(&screenshot)?;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let (width, height, colours) = png_facts(&png)?;
    assert_eq!(width, 1000, "viewport width");
    assert!(height >= 300, "height {height}");
    // A blank or error page has a handful of colours; the rendered page has text, badges and
    // anti-aliasing.
    assert!(
        colours > 50,
        "only {colours} distinct colours: not a rendered page"
    );
    // Keep a copy for people to look at.
    let keep = toolgate_tests::workspace_root().join("target/browser-connections.png");
    let _ = std::fs::write(&keep, &png);

    gateway.process.terminate().await?;
    assert_no_key("stderr", &gateway.process.stderr());
    assert_no_key("browser script output", &stdout);
    Ok(())
}
