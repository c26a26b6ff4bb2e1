//! The binary run exactly as the image runs it (ENTRYPOINT + CMD, the image's ENV and
//! nothing inherited, a working directory standing in for WORKDIR, the HEALTHCHECK command),
//! with the secrets and config that compose.yaml and the k8s manifests give it, against the
//! sandbox. It listens on 0.0.0.0 as in a container; the tests connect only through
//! 127.0.0.1. The one change: port 0 instead of the image's fixed port.

use anyhow::Context;
use serde_json::{Value, json};
use toolgate_sandbox::Sandbox;
use toolgate_tests::binary::{E2E_API_KEY, assert_no_key, control, eventually, sandbox};
use toolgate_tests::deploy::{
    ContainerRun, deploy_file, image_config, parse_toml, read_structured, strings, text,
};
use toolgate_tests::http::{RawMcp, messages};

const TOKEN: &str = "container-test-token-0123456789";

/// The image's listen address with port 0 (tests never bind fixed ports).
fn any_port(run: &mut ContainerRun) -> anyhow::Result<()> {
    let listen = run.var("TOOLGATE_LISTEN").context("TOOLGATE_LISTEN")?;
    let (host, _) = listen.rsplit_once(':').context("listen")?;
    let host = host.to_owned();
    run.set("TOOLGATE_LISTEN", &format!("{host}:0"));
    Ok(())
}

/// The run-time secrets every deployment gives toolgate, pointed at the sandbox.
fn secrets(sandbox: &Sandbox, user: &str) -> Vec<(String, String)> {
    vec![
        ("COMPOSIO_API_KEY".into(), E2E_API_KEY.into()),
        ("COMPOSIO_BASE_URL".into(), sandbox.base_url()),
        ("TOOLGATE_TOKEN".into(), TOKEN.into()),
        ("TOOLGATE_USER_ID".into(), user.into()),
    ]
}

/// The image's HEALTHCHECK command (or `extra` appended), run beside a server on `port`.
async fn healthcheck(run: &ContainerRun, port: u16, extra: &[&str]) -> anyhow::Result<bool> {
    let mut probe = ContainerRun::new(run.image.clone(), &run.env, &run.workdir);
    let listen = run.var("TOOLGATE_LISTEN").context("listen")?;
    let (host, _) = listen.rsplit_once(':').context("listen")?;
    probe.set("TOOLGATE_LISTEN", &format!("{host}:{port}"));
    let mut argv = strings(&run.image["healthcheck"]["test"]);
    argv.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let output = probe.run(&argv).await?;
    let code = output.status.code();
    assert!(
        matches!(code, Some(0 | 1)),
        "healthcheck exit {code:?}: {}",
        text(&output)
    );
    Ok(output.status.success())
}

fn mcp_client(port: u16, token: Option<&str>) -> RawMcp {
    let mut client = RawMcp::new(&format!("http://127.0.0.1:{port}/mcp"));
    if let Some(token) = token {
        client
            .extra
            .push(("Authorization".into(), format!("Bearer {token}")));
    }
    client
}

/// Composio down at start: alive but not ready (the compose healthcheck fails, the image's
/// passes); the token is required on 0.0.0.0; ready after recovery; SIGTERM ends it cleanly;
/// JSON logs without the key.
#[tokio::test(flavor = "multi_thread")]
async fn image_serves_all_interfaces_with_token_and_health_gates() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    control(
        &sandbox,
        "/_sandbox/faults",
        Some(json!({"path_prefix": "/api/v3.1/tool_router/session", "status": 503})),
    )
    .await?;
    let workdir = tempfile::tempdir()?;
    let mut run = ContainerRun::new(
        image_config().await?,
        &secrets(&sandbox, "container-user"),
        workdir.path(),
    );
    any_port(&mut run)?;
    assert!(
        run.var("TOOLGATE_LISTEN")
            .unwrap_or("")
            .starts_with("0.0.0.0:")
    );
    let (mut process, port) = run.start().await?;

    // Alive at once; not ready while the session cannot be created.
    assert!(healthcheck(&run, port, &[]).await?, "liveness failed");
    let http = reqwest::Client::builder().no_proxy().build()?;
    eventually("a failed session attempt", || async {
        let body: Value = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await?
            .json()
            .await?;
        Ok(body["last_error"].is_string().then_some(()))
    })
    .await?;
    assert!(
        !healthcheck(&run, port, &["--ready"]).await?,
        "ready during the outage"
    );

    // The MCP endpoint wants the token.
    let anonymous = mcp_client(port, None)
        .post(&json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}))
        .send()
        .await?;
    assert_eq!(anonymous.status(), 401);

    // Composio back: ready, and a client with the token works.
    let client = reqwest::Client::builder().no_proxy().build()?;
    client
        .delete(format!("{}/_sandbox/faults", sandbox.base_url()))
        .send()
        .await?;
    eventually("readiness", || async {
        Ok(healthcheck(&run, port, &["--ready"]).await?.then_some(()))
    })
    .await?;
    let mut mcp = mcp_client(port, Some(TOKEN));
    mcp.initialize().await?;
    let list = mcp
        .post(&json!({"jsonrpc":"2.0","id":2,"method":"tools/list"}))
        .send()
        .await?
        .text()
        .await?;
    assert!(list.contains("SANDBOX_ECHO"), "{list}");

    // SIGTERM: a clean exit, and the probe then fails.
    let status = process.terminate().await?;
    assert!(status.success(), "{status}");
    assert!(!healthcheck(&run, port, &[]).await?);
    let stderr = process.stderr();
    assert_no_key("stderr", &stderr);
    // TOOLGATE_LOG_FORMAT=json from the image: log records are JSON objects.
    let records: Vec<&str> = stderr
        .lines()
        .filter(|line| line.starts_with('{'))
        .collect();
    assert!(!records.is_empty(), "no JSON log lines:\n{stderr}");
    for record in records {
        serde_json::from_str::<Value>(record).with_context(|| record.to_owned())?;
    }
    Ok(())
}

/// SIGTERM as `docker stop` / the kubelet send it: no new connections, a call in flight that
/// fits in `drain_timeout` completes, one that does not is cut at the deadline, exit 0.
#[tokio::test(flavor = "multi_thread")]
async fn image_drains_on_sigterm_up_to_the_deadline() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let workdir = tempfile::tempdir()?;
    let mut env = secrets(&sandbox, "drain-user");
    env.push(("TOOLGATE_DRAIN_TIMEOUT".into(), "3s".into()));
    let mut run = ContainerRun::new(image_config().await?, &env, workdir.path());
    any_port(&mut run)?;
    let (mut process, port) = run.start().await?;
    eventually("readiness", || async {
        Ok(healthcheck(&run, port, &["--ready"]).await?.then_some(()))
    })
    .await?;
    let mut mcp = mcp_client(port, Some(TOKEN));
    mcp.initialize().await?;
    sandbox.clear_requests();
    let slow = |id: u64, steps: u64| {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{
            "name":"SANDBOX_SLOW_OPERATION","arguments":{"steps":steps,"interval_ms":250}}})
    };
    // 1 s: fits in the drain. 20 s: does not.
    let short = tokio::spawn(mcp.post(&slow(1, 4)).send());
    let long = tokio::spawn(mcp.post(&slow(2, 80)).send());
    eventually("both calls to reach the upstream", || async {
        let posts = sandbox
            .requests()
            .iter()
            .filter(|request| request.method == "POST" && request.path.ends_with("/mcp"))
            .count();
        Ok((posts >= 2).then_some(()))
    })
    .await?;
    let status = process.terminate().await?;
    assert!(status.success(), "{status}");
    let short = short.await??;
    assert_eq!(short.status(), 200);
    let short_body = short.text().await?;
    assert!(short_body.contains("Completed 4 steps"), "{short_body}");
    // The long call was cut when the deadline passed: its stream ends without the result.
    let long_body = match long.await? {
        Ok(response) => response.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    assert!(!long_body.contains("Completed 80 steps"), "{long_body}");
    assert!(
        !healthcheck(&run, port, &[]).await?,
        "still answering after exit"
    );
    assert!(
        process.stderr().contains("draining"),
        "{}",
        process.stderr()
    );
    Ok(())
}

/// Without a token the image's 0.0.0.0 listener is refused before anything binds.
#[tokio::test(flavor = "multi_thread")]
async fn image_without_token_refuses_to_listen() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let workdir = tempfile::tempdir()?;
    let mut env = secrets(&sandbox, "no-token-user");
    env.retain(|(key, _)| key != "TOOLGATE_TOKEN");
    let mut run = ContainerRun::new(image_config().await?, &env, workdir.path());
    // A port that was free, so the test can see nothing was bound on it.
    let port = toolgate_tests::free_port()?;
    let listen = run.var("TOOLGATE_LISTEN").context("listen")?.to_owned();
    let (host, _) = listen.rsplit_once(':').context("listen")?;
    run.set("TOOLGATE_LISTEN", &format!("{host}:{port}"));
    let output = run.run(&run.default_argv()).await?;
    assert_eq!(output.status.code(), Some(64), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`token`"), "{stderr}");
    assert!(stderr.contains("TOOLGATE_TOKEN"), "{stderr}");
    assert_no_key("stderr", &stderr);
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
    Ok(())
}

/// The environment a k8s container gets: its `env` values and the Secret's keys (`envFrom`).
async fn k8s_env(deployment_file: &str) -> anyhow::Result<Vec<(String, String)>> {
    let docs = read_structured(&deploy_file(deployment_file)).await?;
    let secret_docs = read_structured(&deploy_file("k8s/secret.example.yaml")).await?;
    let secret = &secret_docs[0]["stringData"];
    let deployment = docs
        .as_array()
        .and_then(|docs| docs.iter().find(|doc| doc["kind"] == "Deployment"))
        .context("Deployment")?;
    let pod = &deployment["spec"]["template"]["spec"];
    let container = ["containers", "initContainers"]
        .iter()
        .find_map(|list| {
            pod[*list]
                .as_array()
                .and_then(|items| items.iter().find(|c| c["name"] == "toolgate"))
        })
        .context("toolgate container")?;
    let mut env = Vec::new();
    if container["envFrom"][0]["secretRef"].is_object() {
        for (key, value) in secret.as_object().context("stringData")? {
            env.push((key.clone(), value.as_str().unwrap_or("").to_owned()));
        }
    }
    for var in container["env"].as_array().cloned().unwrap_or_default() {
        if let (Some(name), Some(value)) = (var["name"].as_str(), var["value"].as_str()) {
            env.push((name.to_owned(), value.to_owned()));
        }
    }
    Ok(env)
}

/// Writes the ConfigMap's toolgate.toml into `dir` (the volume mounted at WORKDIR).
async fn mount_configmap(dir: &std::path::Path) -> anyhow::Result<Value> {
    let docs = read_structured(&deploy_file("k8s/configmap.yaml")).await?;
    let toml_text = docs[0]["data"]["toolgate.toml"]
        .as_str()
        .context("toolgate.toml")?;
    std::fs::write(dir.join("toolgate.toml"), toml_text)?;
    parse_toml(toml_text).await
}

/// The documented way to pin a session: `toolgate status` creates one and prints its id.
/// Two standalone replicas configured from the manifests with that id share it (no new
/// session is created); an MCP session opened through one replica goes on through the other
/// after the first is killed.
#[tokio::test(flavor = "multi_thread")]
async fn k8s_replicas_share_the_pinned_session_and_survive_a_replica_death() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let workdir = tempfile::tempdir()?;
    let config = mount_configmap(workdir.path()).await?;
    let image = image_config().await?;
    let mut env = k8s_env("k8s/standalone.yaml").await?;
    // The Secret's placeholders, filled in as `kubectl create secret` would.
    env.retain(|(key, _)| {
        !["COMPOSIO_API_KEY", "TOOLGATE_TOKEN", "TOOLGATE_SESSION_ID"].contains(&key.as_str())
    });
    env.extend([
        ("COMPOSIO_API_KEY".to_owned(), E2E_API_KEY.to_owned()),
        ("COMPOSIO_BASE_URL".to_owned(), sandbox.base_url()),
        ("TOOLGATE_TOKEN".to_owned(), TOKEN.to_owned()),
    ]);

    // `toolgate status` in the same image, config and secrets: creates the session.
    let status_run = ContainerRun::new(image.clone(), &env, workdir.path());
    let entry = strings(&image["entrypoint"]);
    let mut argv = entry.clone();
    argv.extend([
        "status".to_owned(),
        "--timeout".to_owned(),
        "20s".to_owned(),
    ]);
    let output = status_run.run(&argv).await?;
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let session_id = printed
        .split_whitespace()
        .find(|word| word.starts_with("trs_"))
        .map(|word| word.trim_end_matches([':', ',']).to_owned())
        .with_context(|| format!("no session id printed by status: {printed}"))?;
    assert_no_key("status output", &printed);
    env.push(("TOOLGATE_SESSION_ID".to_owned(), session_id.clone()));

    // `status` created exactly one session: the count below sees session creations.
    assert_eq!(session_creations(&sandbox), 1);
    sandbox.clear_requests();
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut run = ContainerRun::new(image.clone(), &env, workdir.path());
        any_port(&mut run)?;
        let (process, port) = run.start().await?;
        replicas.push((run, process, port));
    }
    for (run, _, port) in &replicas {
        eventually("replica readiness", || async {
            Ok(healthcheck(run, *port, &["--ready"]).await?.then_some(()))
        })
        .await?;
    }
    let created = session_creations(&sandbox);
    assert_eq!(created, 0, "a replica created its own session");
    // The ConfigMap's required toolkits are tracked on both.
    let http = reqwest::Client::builder().no_proxy().build()?;
    for (_, _, port) in &replicas {
        let ready: Value = http
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await?
            .json()
            .await?;
        let slugs: Vec<&str> = ready["toolkits"]
            .as_array()
            .map(|items| items.iter().filter_map(|t| t["slug"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(slugs, strings(&config["require"]), "{ready}");
    }

    // An MCP session through replica 0, then replica 0 dies (SIGKILL).
    let mut first = mcp_client(replicas[0].2, Some(TOKEN));
    // The Service name is an allowed Host in the ConfigMap; requests by name are accepted.
    first.extra.push(("Host".into(), "toolgate".into()));
    first.initialize().await?;
    let mcp_session = first.session.clone().context("no Mcp-Session-Id")?;
    let (_, dead, _) = replicas.remove(0);
    // Dropping the process sends SIGKILL (kill_on_drop): no drain, as when a node dies.
    drop(dead);

    let mut second = mcp_client(replicas[0].2, Some(TOKEN));
    second.session = Some(mcp_session);
    let answer = second
        .post(&json!({"jsonrpc":"2.0","id":7,"method":"tools/list"}))
        .send()
        .await?;
    assert_eq!(answer.status(), 200);
    let body = answer.text().await?;
    let reply = messages(&body)
        .into_iter()
        .find(|message| message["id"] == 7)
        .with_context(|| format!("no answer: {body}"))?;
    assert!(reply["result"]["tools"].is_array(), "{reply}");
    Ok(())
}

/// compose.yaml's toolgate environment (the env file example plus `environment:`) configures
/// the gateway, and the example agent's own command, run with `sh` and curl, reaches it by
/// service name (`Host: toolgate:PORT`, connected to 127.0.0.1 through a curlrc `connect-to`).
#[tokio::test(flavor = "multi_thread")]
async fn compose_environment_serves_the_example_agent() -> anyhow::Result<()> {
    let sandbox = sandbox()?;
    let docs = read_structured(&deploy_file("compose.yaml")).await?;
    let services = &docs[0]["services"];
    let mut env = env_file(&deploy_file("toolgate.env.example"))?;
    for (key, value) in services["toolgate"]["environment"]
        .as_object()
        .context("environment")?
    {
        env.push((key.clone(), value.as_str().unwrap_or("").to_owned()));
    }
    // The example's placeholders, filled in.
    env.retain(|(key, _)| !["COMPOSIO_API_KEY", "TOOLGATE_TOKEN"].contains(&key.as_str()));
    env.extend([
        ("COMPOSIO_API_KEY".to_owned(), E2E_API_KEY.to_owned()),
        ("COMPOSIO_BASE_URL".to_owned(), sandbox.base_url()),
        ("TOOLGATE_TOKEN".to_owned(), TOKEN.to_owned()),
    ]);
    let workdir = tempfile::tempdir()?;
    let mut run = ContainerRun::new(image_config().await?, &env, workdir.path());
    any_port(&mut run)?;
    let (mut process, port) = run.start().await?;
    // compose's healthcheck (readiness) gates the agent.
    let health = strings(&services["toolgate"]["healthcheck"]["test"]);
    let health_args: Vec<&str> = health.iter().skip(3).map(String::as_str).collect();
    eventually("compose healthcheck", || async {
        Ok(healthcheck(&run, port, &health_args).await?.then_some(()))
    })
    .await?;

    // The agent, as compose runs it: entrypoint + command, its environment (interpolated).
    let agent = &services["agent"];
    let mut argv = strings(&agent["entrypoint"]);
    argv.extend(
        strings(&agent["command"])
            .into_iter()
            .map(|script| script.replace("$$", "$")),
    );
    let url = agent["environment"]["MCP_URL"]
        .as_str()
        .context("MCP_URL")?;
    let url = url.replace(":8787/", &format!(":{port}/"));
    let curl_home = tempfile::tempdir()?;
    std::fs::write(
        curl_home.path().join(".curlrc"),
        format!("connect-to = toolgate:{port}:127.0.0.1:{port}\n"),
    )?;
    let token_source = agent["environment"]["MCP_TOKEN"].as_str().unwrap_or("");
    assert!(
        token_source.starts_with("${TOOLGATE_TOKEN"),
        "{token_source}"
    );
    let (program, args) = argv.split_first().context("agent argv")?;
    let scratch = tempfile::tempdir()?;
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CURL_HOME", curl_home.path())
        .env("MCP_URL", url)
        .env("MCP_TOKEN", TOKEN)
        .env("TMPDIR", scratch.path())
        .current_dir(scratch.path());
    // The script keeps its header file in $TMPDIR, else /tmp (a tmpfs in compose).
    let output = tokio::task::spawn_blocking(move || command.output()).await??;
    assert!(output.status.success(), "agent failed: {}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let tools = messages(&stdout)
        .into_iter()
        .find(|message| message["id"] == 2)
        .with_context(|| format!("no tools/list answer: {stdout}"))?;
    assert!(tools["result"]["tools"].is_array(), "{tools}");
    let status = process.terminate().await?;
    assert!(status.success());
    assert_no_key("stderr", &process.stderr());
    Ok(())
}

/// How many sessions were created at the sandbox since its request log was last cleared.
fn session_creations(sandbox: &Sandbox) -> usize {
    sandbox
        .requests()
        .iter()
        .filter(|request| {
            request.method == "POST"
                && request
                    .path
                    .trim_end_matches('/')
                    .ends_with("/tool_router/session")
        })
        .count()
}

/// `KEY=value` lines of an env file (comments and blank lines skipped), as compose reads them.
fn env_file(path: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect())
}
