//! Parity of the two faces: the same requests through `toolgate serve` and `toolgate stdio`,
//! both in Composio mode against the sandbox with `gmail` required and not connected, get the
//! same JSON-RPC answers: codes, messages (each user's own Connect Link masked), and ids byte
//! for byte.

use std::time::Duration;

use serde_json::{Value, json};
use toolgate_sandbox::Sandbox;
use toolgate_tests::binary::{Gateway, composio_env, links_in, result_text, sandbox};
use toolgate_tests::stdio::LineChild;

/// The requests of every scenario, as raw lines/bodies, with the raw id each answer must echo.
fn scenarios() -> Vec<(String, &'static str)> {
    let call = |id: &str, meta: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"SANDBOX_ECHO","arguments":{{"message":"hi"}}{meta}}}}}"#
        )
    };
    let url_client =
        r#","_meta":{"io.modelcontextprotocol/clientCapabilities":{"elicitation":{"url":{}}}}"#;
    vec![
        (call("1E2", ""), "1E2"),
        (
            call("12345678901234567890123", ""),
            "12345678901234567890123",
        ),
        (call(r#""a\u0031""#, url_client), r#""a\u0031""#),
        (call("-0", url_client), "-0"),
        ("{".to_owned(), "null"),
        (r#"{"jsonrpc":"2.0","id":7,"method":5}"#.to_owned(), "null"),
    ]
}

/// `value` with every link and elicitation id masked (each user gets their own).
fn masked(value: &Value) -> Value {
    match value {
        Value::String(text) => {
            let mut text = text.clone();
            for link in links_in(&text) {
                text = text.replace(&link, "<link>");
            }
            if text.starts_with("toolgate-gmail-") {
                text = "<elicitation id>".to_owned();
            }
            Value::String(text)
        }
        Value::Array(items) => Value::Array(items.iter().map(masked).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), masked(v))).collect())
        }
        other => other.clone(),
    }
}

fn blocked_call() -> Value {
    json!({"jsonrpc":"2.0","id":"probe","method":"tools/call","params":{"name":"SANDBOX_ECHO","arguments":{"message":"hi"}}})
}

async fn http_answers(sandbox: &Sandbox) -> anyhow::Result<Vec<String>> {
    let mut env = composio_env(sandbox, "parity-http");
    env.push(("TOOLGATE_REQUIRE".into(), "gmail".into()));
    let gateway = Gateway::start(&[], &env).await?;
    let client = gateway.mcp().await?;
    // The first answers may come before the tracker minted a link: wait for one.
    loop {
        let answer: Value = client.post(&blocked_call()).send().await?.json().await?;
        if !links_in(&result_text(&answer)).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut answers = Vec::new();
    for (body, _) in scenarios() {
        let response = client
            .client
            .post(&client.url)
            .header("Content-Type", "application/json")
            .header("Accept", "application/json, text/event-stream")
            .header("Mcp-Session-Id", client.session.clone().unwrap_or_default())
            .header("MCP-Protocol-Version", &client.protocol_version)
            .body(body)
            .send()
            .await?;
        answers.push(response.text().await?);
    }
    Ok(answers)
}

async fn stdio_answers(sandbox: &Sandbox) -> anyhow::Result<Vec<String>> {
    let mut command = tokio::process::Command::from(toolgate_tests::toolgate_command()?);
    command
        .envs(composio_env(sandbox, "parity-stdio"))
        .env("TOOLGATE_REQUIRE", "gmail")
        .env("TOOLGATE_LISTEN", "127.0.0.1:0")
        .arg("stdio");
    let mut child = LineChild::spawn("toolgate stdio", command)?;
    child
        .send(&json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"parity","version":"0"}}}))
        .await?;
    child.answer_to(&json!(0)).await?;
    child
        .send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await?;
    loop {
        child.send(&blocked_call()).await?;
        let answer = child.answer_to(&json!("probe")).await?;
        if !links_in(&result_text(&answer)).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut answers = Vec::new();
    for (line, _) in scenarios() {
        child.send_raw(&line).await?;
        // The next response line (notifications, if any, are not answers).
        let answer = loop {
            let Some(line) = child.recv_line().await? else {
                anyhow::bail!("stdout ended; stderr:\n{}", child.stderr());
            };
            if !line.contains(r#""method":"#) {
                break line;
            }
        };
        answers.push(answer);
    }
    child.close_stdin();
    Ok(answers)
}

#[tokio::test(flavor = "multi_thread")]
async fn both_faces_give_the_same_answers_with_the_callers_ids() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let (http, stdio) = tokio::try_join!(http_answers(&sandbox), stdio_answers(&sandbox))?;
    for (((request, id), http), stdio) in scenarios().iter().zip(&http).zip(&stdio) {
        for (face, answer) in [("serve", http), ("stdio", stdio)] {
            assert!(
                answer.contains(&format!(r#""id":{id}"#)),
                "{face} did not echo {id} byte for byte for {request}: {answer}"
            );
        }
        let http_value: Value = serde_json::from_str(http)?;
        let stdio_value: Value = serde_json::from_str(stdio)?;
        assert_eq!(
            masked(&http_value),
            masked(&stdio_value),
            "answers differ for {request}"
        );
    }
    let codes: Vec<Value> = http
        .iter()
        .map(|answer| {
            let value: Value = serde_json::from_str(answer).unwrap_or_default();
            value["error"]["code"].clone()
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            Value::Null,
            Value::Null,
            json!(-32042),
            json!(-32042),
            json!(-32700),
            json!(-32600)
        ]
    );
    Ok(())
}
