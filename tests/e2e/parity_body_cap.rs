//! A tool argument over toolgate's body cap (5 MB against the default 4 MiB), from the pinned
//! Python and TypeScript SDKs: the call gets a JSON-RPC error the SDK can show, and the next
//! call on the same session works (toolgate reads the rest of the body before answering 413,
//! so the client never hits a broken pipe).

use std::path::Path;
use std::time::Duration;

use toolgate_tests::http::{ServerEverything, ToolgateServe};
use toolgate_tests::{node22, peer};

async fn run(program: &Path, args: &[&str]) -> anyhow::Result<(bool, String)> {
    let output = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(program)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await??;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.success(), text))
}

const PYTHON_CLIENT: &str = r#"
import sys, anyio
from mcp import Client
async def main():
    async with Client(sys.argv[1]) as client:
        try:
            await client.call_tool("echo", {"message": "x" * 5_000_000})
            print("big call passed")
        except Exception as error:
            print("big call error:", error)
        echo = await client.call_tool("echo", {"message": "after"})
        print("next", [c.text for c in echo.content if c.type == "text"][0])
anyio.run(main)
"#;

const TS_CLIENT: &str = r#"
const sdk = process.argv[2];
const { Client } = await import(`${sdk}/dist/esm/client/index.js`);
const { StreamableHTTPClientTransport } = await import(`${sdk}/dist/esm/client/streamableHttp.js`);
const client = new Client({ name: "body-cap", version: "0" });
await client.connect(new StreamableHTTPClientTransport(new URL(process.argv[3])));
try {
  await client.callTool({ name: "echo", arguments: { message: "x".repeat(5_000_000) } });
  console.log("big call passed");
} catch (error) {
  console.log("big call error:", error.message);
}
const next = await client.callTool({ name: "echo", arguments: { message: "after" } });
console.log("next", next.content[0].text);
await client.close();
"#;

#[tokio::test]
async fn python_sdk_gets_an_error_for_an_over_cap_argument_and_keeps_its_session() {
    let upstream = ServerEverything::start().await.unwrap();
    let gateway = ToolgateServe::start(&["--upstream", &upstream.url], &[])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("client.py");
    std::fs::write(&script, PYTHON_CLIENT).unwrap();
    let python = peer("venv/bin/python").unwrap();
    let (ok, output) = run(&python, &[script.to_str().unwrap(), &gateway.url])
        .await
        .unwrap();
    assert!(ok, "{output}");
    assert!(output.contains("big call error:"), "{output}");
    assert!(output.contains("next Echo: after"), "{output}");
}

#[tokio::test]
async fn ts_sdk_gets_an_error_for_an_over_cap_argument_and_keeps_its_session() {
    let upstream = ServerEverything::start().await.unwrap();
    let gateway = ToolgateServe::start(&["--upstream", &upstream.url], &[])
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("client.mjs");
    std::fs::write(&script, TS_CLIENT).unwrap();
    let sdk = peer("node/node_modules/@modelcontextprotocol/sdk").unwrap();
    let node = node22().unwrap();
    let args = [
        script.to_str().unwrap(),
        sdk.to_str().unwrap(),
        &gateway.url,
    ];
    let (ok, output) = run(&node, &args).await.unwrap();
    assert!(ok, "{output}");
    assert!(output.contains("big call error:"), "{output}");
    assert!(output.contains("next Echo: after"), "{output}");
}
