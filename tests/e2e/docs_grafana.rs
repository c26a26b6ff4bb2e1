//! `deploy/grafana-dashboard.json` is a loadable dashboard that queries metrics the binary
//! really exports: every metric name in its PromQL is a family in a running gateway's
//! `/metrics`, and every label it groups by is on that family's samples.

use std::collections::BTreeSet;

use anyhow::{Context as _, ensure};
use serde_json::Value;
use toolgate_tests::binary::{Gateway, composio_env, sandbox};

const DASHBOARD: &str = include_str!("../../deploy/grafana-dashboard.json");

/// Labels Prometheus adds at scrape time or histograms carry by construction.
const SCRAPE_LABELS: &[&str] = &["job", "instance", "le"];

/// `toolgate_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("toolgate_") {
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[start + name.len()..];
        names.push(name);
    }
    names
}

/// The family a sample name belongs to (`_total`, `_bucket`, `_count`, `_sum` dropped).
fn family(name: &str) -> &str {
    ["_total", "_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// Labels named in `by (...)` clauses.
fn grouping_labels(expr: &str) -> Vec<String> {
    expr.split("by (")
        .skip(1)
        .filter_map(|after| after.split_once(')'))
        .flat_map(|(labels, _)| labels.split(','))
        .map(|label| label.trim().to_owned())
        .filter(|label| !label.is_empty())
        .collect()
}

/// Checks the dashboard's structure; returns every (expr) it queries.
fn dashboard_exprs(dashboard: &Value) -> anyhow::Result<Vec<String>> {
    ensure!(dashboard["title"].is_string() && dashboard["uid"].is_string());
    ensure!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let variables = dashboard["templating"]["list"]
        .as_array()
        .context("templating.list")?;
    ensure!(
        variables.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus datasource variable"
    );
    let panels = dashboard["panels"].as_array().context("panels")?;
    ensure!(panels.len() >= 6, "too few panels");
    let mut ids = BTreeSet::new();
    let mut exprs = Vec::new();
    for panel in panels {
        let title = panel["title"].as_str().context("panel title")?;
        ensure!(ids.insert(panel["id"].as_u64()), "duplicate id at {title}");
        ensure!(
            ["stat", "timeseries", "gauge", "bargauge", "table"]
                .contains(&panel["type"].as_str().unwrap_or("")),
            "{title}: panel type"
        );
        let grid = &panel["gridPos"];
        let (x, w) = (grid["x"].as_u64(), grid["w"].as_u64());
        ensure!(
            x.zip(w).is_some_and(|(x, w)| w > 0 && x + w <= 24) && grid["h"].as_u64() > Some(0),
            "{title}: gridPos within 24 columns"
        );
        ensure!(
            panel["datasource"]["uid"] == "${datasource}",
            "{title}: uses the datasource variable"
        );
        let targets = panel["targets"].as_array().context("targets")?;
        ensure!(!targets.is_empty(), "{title}: no queries");
        let mut ref_ids = BTreeSet::new();
        for target in targets {
            ensure!(ref_ids.insert(target["refId"].as_str()), "{title}: refId");
            let expr = target["expr"].as_str().context("expr")?;
            ensure!(
                expr.matches('(').count() == expr.matches(')').count(),
                "{title}: unbalanced {expr}"
            );
            exprs.push(expr.to_owned());
        }
    }
    Ok(exprs)
}

#[tokio::test(flavor = "multi_thread")]
async fn grafana_dashboard_queries_exported_metrics() -> anyhow::Result<()> {
    let dashboard: Value = serde_json::from_str(DASHBOARD).context("dashboard JSON")?;
    let exprs = dashboard_exprs(&dashboard)?;

    let sandbox = sandbox()?;
    let mut env = composio_env(&sandbox, "grafana-user");
    env.push(("TOOLGATE_REQUIRE".into(), "gmail".into()));
    let mut gateway = Gateway::start(&[], &env).await?;
    // The first check has run: Composio was called, the gate and pending gauges are set.
    gateway.wait_for_gate("closed").await?;
    // One forwarded and one blocked request, so the labelled request family has samples.
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"GMAIL_SEND_EMAIL"}}"#,
    ] {
        gateway
            .http
            .post(format!("{}/mcp", gateway.base))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body)
            .send()
            .await?;
    }
    let (status, metrics) = gateway.get("/metrics").await?;
    ensure!(status == 200, "/metrics answered {status}");
    gateway.process.terminate().await?;

    let mut problems = Vec::new();
    for expr in &exprs {
        for name in metric_names(expr) {
            let family = family(&name);
            if !metrics.contains(&format!("# TYPE {family} ")) {
                problems.push(format!("{family} (in `{expr}`) is not in /metrics"));
                continue;
            }
            let samples: Vec<&str> = metrics
                .lines()
                .filter(|line| line.starts_with(family))
                .collect();
            for label in grouping_labels(expr) {
                if SCRAPE_LABELS.contains(&label.as_str()) {
                    continue;
                }
                if !samples
                    .iter()
                    .any(|line| line.contains(&format!("{label}=\"")))
                {
                    problems.push(format!("{family} has no label `{label}` (in `{expr}`)"));
                }
            }
        }
    }
    ensure!(
        problems.is_empty(),
        "{}\n--- /metrics ---\n{metrics}",
        problems.join("\n")
    );
    Ok(())
}
