//! `toolgate stdio` in Composio mode (how Claude Desktop runs it): MCP on stdin/stdout to the
//! session, blocked calls carry the link, the callback page on the listen address, Allow →
//! the same call passes, EOF ends the process.

use std::time::Duration;

use serde_json::json;
use toolgate_tests::binary::{
    E2E_API_KEY, answer_link, assert_no_key, composio_env, eventually, links_in, result_text,
    sandbox,
};
use toolgate_tests::stdio::LineChild;

#[tokio::test(flavor = "multi_thread")]
async fn stdio_composio_mode_gates_calls() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let mut command = tokio::process::Command::from(toolgate_tests::toolgate_command()?);
    command
        .envs(composio_env(&sandbox, "stdio-user"))
        .env("TOOLGATE_REQUIRE", "gmail")
        .env("TOOLGATE_LISTEN", "127.0.0.1:0")
        .arg("stdio");
    let mut child = LineChild::spawn("toolgate stdio", command)?;
    child
        .send(&json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"e2e","version":"0"}}}))
        .await?;
    let init = child.answer_to(&json!(1)).await?;
    assert!(init["result"]["serverInfo"].is_object(), "{init}");
    child
        .send(&json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await?;

    let call = |id: u64| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
        "name":"SANDBOX_ECHO","arguments":{"message":"from stdio"}}})
    };
    // The first answers may come before the tracker's first check (no link yet): poll.
    let mut id = 10;
    let blocked = loop {
        id += 1;
        child.send(&call(id)).await?;
        let answer = child.answer_to(&json!(id)).await?;
        assert_eq!(answer["result"]["isError"], true, "{answer}");
        if !links_in(&result_text(&answer)).is_empty() {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let link = links_in(&result_text(&blocked)).remove(0);

    // The connections page and the callback live on the listen address, printed on stderr.
    let page_base = eventually("the connections page address", || async {
        Ok(child
            .stderr()
            .lines()
            .find_map(|line| line.split("connections page ").nth(1))
            .and_then(|rest| rest.strip_suffix("/connections"))
            .map(str::to_owned))
    })
    .await?;
    let page = reqwest::get(format!("{page_base}/connections"))
        .await?
        .text()
        .await?;
    assert!(page.contains(&link), "{page}");

    answer_link(&sandbox, &link, "allow").await?;
    let deadline = tokio::time::Instant::now() + toolgate_tests::binary::PATIENCE;
    let passed = loop {
        id += 1;
        child.send(&call(id)).await?;
        let answer = child.answer_to(&json!(id)).await?;
        if answer["result"]["isError"] != true {
            break answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still blocked: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(result_text(&passed).contains("from stdio"), "{passed}");

    child.close_stdin();
    let status = child.wait(Duration::from_secs(15)).await?;
    assert!(status.success(), "{status}");
    let stderr = child.stderr();
    assert_no_key("stdio stderr", &stderr);
    assert!(!page.contains(E2E_API_KEY));
    Ok(())
}
