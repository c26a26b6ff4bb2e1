//! deploy/ checked without a container engine or a cluster: hadolint on the Dockerfile, the
//! Kubernetes manifests against the bundled Kubernetes schemas (kubernetes-validate, strict),
//! compose.yaml against the compose-spec schema (check-jsonschema), each shown to reject a
//! broken copy; then the rules no schema knows (non-root, probes, grace period longer than the
//! drain, resources, selectors, secrets, health-gated startup).

use anyhow::Context;
use serde_json::Value;
use toolgate_tests::deploy::{
    deploy_file, image_config, output, parse_toml, read_structured, seconds, strings, text,
    venv_tool,
};
use toolgate_tests::workspace_root;

/// Kubernetes versions the manifests must validate against: native sidecars and the preStop
/// `sleep` action need 1.33; the newest schema bundled is 1.37.
const KUBERNETES_VERSIONS: &[&str] = &["1.33.0", "1.37.0"];

const K8S_FILES: &[&str] = &[
    "k8s/configmap.yaml",
    "k8s/secret.example.yaml",
    "k8s/standalone.yaml",
    "k8s/sidecar.yaml",
];

#[tokio::test]
async fn hadolint_accepts_the_dockerfile_and_rejects_a_bad_one() -> anyhow::Result<()> {
    let hadolint = venv_tool("hadolint")?;
    let dockerfile = deploy_file("Dockerfile");
    let clean = output(&hadolint, &[dockerfile.to_str().context("path")?]).await?;
    assert!(clean.status.success(), "{}", text(&clean));

    // The same tool must fail on known problems, or the pass above proves nothing.
    let dir = tempfile::tempdir()?;
    let bad = dir.path().join("Dockerfile");
    std::fs::write(
        &bad,
        "FROM debian:latest\nRUN apt-get update && apt-get install curl\nCMD toolgate serve\n",
    )?;
    let findings = output(&hadolint, &[bad.to_str().context("path")?]).await?;
    assert!(!findings.status.success(), "{}", text(&findings));
    let report = String::from_utf8_lossy(&findings.stdout);
    assert!(
        report.contains("DL3007"),
        "latest tag not reported: {report}"
    );
    Ok(())
}

#[tokio::test]
async fn kubernetes_manifests_match_the_schemas_strictly() -> anyhow::Result<()> {
    let validate = venv_tool("kubernetes-validate")?;
    for version in KUBERNETES_VERSIONS {
        for file in K8S_FILES {
            let path = deploy_file(file);
            let result = output(
                &validate,
                &["--strict", "-k", version, path.to_str().context("path")?],
            )
            .await?;
            assert!(
                result.status.success(),
                "{file} @ {version}: {}",
                text(&result)
            );
        }
    }
    // A misspelt field must fail strict validation.
    let original = std::fs::read_to_string(deploy_file("k8s/standalone.yaml"))?;
    let broken = original.replacen("readOnlyRootFilesystem", "readOnlyRootFilesytem", 1);
    assert_ne!(original, broken);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("standalone.yaml");
    std::fs::write(&path, broken)?;
    let result = output(
        &validate,
        &["--strict", "-k", "1.33.0", path.to_str().context("path")?],
    )
    .await?;
    assert!(!result.status.success(), "{}", text(&result));
    assert!(
        text(&result).contains("readOnlyRootFilesytem"),
        "{}",
        text(&result)
    );
    Ok(())
}

#[tokio::test]
async fn compose_file_matches_the_compose_spec() -> anyhow::Result<()> {
    let check = venv_tool("check-jsonschema")?;
    let compose = deploy_file("compose.yaml");
    let args = ["--builtin-schema", "vendor.compose-spec"];
    let result = output(
        &check,
        &[args[0], args[1], compose.to_str().context("path")?],
    )
    .await?;
    assert!(result.status.success(), "{}", text(&result));

    let original = std::fs::read_to_string(&compose)?;
    let broken = original.replacen("condition: service_healthy", "condition: when_healthy", 1);
    assert_ne!(original, broken);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("compose.yaml");
    std::fs::write(&path, broken)?;
    let result = output(&check, &[args[0], args[1], path.to_str().context("path")?]).await?;
    assert!(!result.status.success(), "{}", text(&result));
    Ok(())
}

#[tokio::test]
async fn dockerfile_builds_locked_and_runs_minimal_non_root() -> anyhow::Result<()> {
    let image = image_config().await?;
    let dockerfile = std::fs::read_to_string(deploy_file("Dockerfile"))?;
    assert!(
        dockerfile.contains("cargo build --release --locked"),
        "the build must be locked"
    );
    assert!(
        dockerfile.contains("--version"),
        "no smoke run in the build stage"
    );
    // The runtime image has no shell: everything that runs in it is exec form (checked by
    // dockerfile.py) and starts with the binary.
    assert!(
        image["from"]
            .as_str()
            .unwrap_or("")
            .starts_with("gcr.io/distroless/cc-debian12"),
        "{}",
        image["from"]
    );
    let binary = image["entrypoint"][0].as_str().context("ENTRYPOINT")?;
    let health = strings(&image["healthcheck"]["test"]);
    assert_eq!(health, [binary, "healthcheck"]);
    assert_eq!(strings(&image["cmd"]), ["serve"]);
    let user = image["user"].as_str().context("USER")?;
    let uid: u32 = user.split(':').next().unwrap_or("").parse()?;
    assert_ne!(uid, 0, "runs as root");

    // Listens on all interfaces, on the EXPOSEd port.
    let listen = image["env"]["TOOLGATE_LISTEN"]
        .as_str()
        .context("TOOLGATE_LISTEN")?;
    let (host, port) = listen.rsplit_once(':').context("listen")?;
    assert_eq!(host, "0.0.0.0");
    assert_eq!(strings(&image["expose"]), [port]);
    // No secret is baked into the image.
    for key in image["env"].as_object().context("env")?.keys() {
        assert!(
            !["TOOLGATE_TOKEN", "COMPOSIO_API_KEY"].contains(&key.as_str()),
            "{key} in the image"
        );
    }

    // OCI labels, with the crate's version.
    let manifest = read_structured(&workspace_root().join("Cargo.toml")).await?;
    let labels = &image["labels"];
    for key in ["title", "description", "version", "licenses", "source"] {
        assert!(
            labels[format!("org.opencontainers.image.{key}")].is_string(),
            "label {key} missing"
        );
    }
    assert_eq!(
        labels["org.opencontainers.image.version"],
        manifest["workspace"]["package"]["version"]
    );
    assert_eq!(
        labels["org.opencontainers.image.licenses"],
        manifest["workspace"]["package"]["license"]
    );
    // The build image's toolchain is the pinned one.
    let toolchain = read_structured(&workspace_root().join("rust-toolchain.toml")).await?;
    assert_eq!(
        image["build_stage_args"]["build"]["RUST_VERSION"],
        toolchain["toolchain"]["channel"]
    );
    Ok(())
}

/// The manifests' toolgate config (the ConfigMap's TOML).
async fn configmap_toml() -> anyhow::Result<Value> {
    let docs = read_structured(&deploy_file("k8s/configmap.yaml")).await?;
    let text = docs[0]["data"]["toolgate.toml"]
        .as_str()
        .context("toolgate.toml key")?;
    parse_toml(text).await
}

fn find<'a>(docs: &'a Value, kind: &str) -> Vec<&'a Value> {
    docs.as_array()
        .map(|docs| docs.iter().filter(|doc| doc["kind"] == kind).collect())
        .unwrap_or_default()
}

/// The toolgate container of a pod spec (a container or a native sidecar init container).
fn toolgate_container(pod: &Value) -> Option<&Value> {
    ["containers", "initContainers"].iter().find_map(|list| {
        pod[*list]
            .as_array()
            .and_then(|items| items.iter().find(|c| c["name"] == "toolgate"))
    })
}

fn assert_hardened(name: &str, container: &Value) {
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
    assert_eq!(security["runAsNonRoot"], true, "{name}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
    assert_eq!(
        strings(&security["capabilities"]["drop"]),
        ["ALL"],
        "{name}"
    );
}

/// The path a probe checks: httpGet path, or the healthcheck command's endpoint.
fn probe_path(probe: &Value, binary: &str) -> Option<&'static str> {
    if let Some(path) = probe["httpGet"]["path"].as_str() {
        return match path {
            "/healthz" => Some("/healthz"),
            "/readyz" => Some("/readyz"),
            _ => None,
        };
    }
    let command = strings(&probe["exec"]["command"]);
    match command.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [program, "healthcheck"] if program == binary => Some("/healthz"),
        [program, "healthcheck", "--ready"] if program == binary => Some("/readyz"),
        _ => None,
    }
}

#[tokio::test]
async fn kubernetes_workloads_are_hardened_probed_and_drain_in_time() -> anyhow::Result<()> {
    let image = image_config().await?;
    let binary = image["entrypoint"][0].as_str().context("ENTRYPOINT")?;
    let config = configmap_toml().await?;
    let drain = seconds(config["drain_timeout"].as_str().context("drain_timeout")?)?;
    let secret_docs = read_structured(&deploy_file("k8s/secret.example.yaml")).await?;
    let secret = find(&secret_docs, "Secret")[0];
    let secret_name = secret["metadata"]["name"].as_str().context("secret name")?;
    let secret_keys: Vec<&String> = secret["stringData"]
        .as_object()
        .context("stringData")?
        .keys()
        .collect();
    for key in [
        "COMPOSIO_API_KEY",
        "TOOLGATE_TOKEN",
        "TOOLGATE_SESSION_ID",
        "TOOLGATE_SESSION_KEY",
    ] {
        assert!(
            secret_keys.iter().any(|k| *k == key),
            "{key} not in the Secret"
        );
    }

    for file in ["k8s/standalone.yaml", "k8s/sidecar.yaml"] {
        let docs = read_structured(&deploy_file(file)).await?;
        let deployment = find(&docs, "Deployment")[0];
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{file}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{file}");
        let toolgate = toolgate_container(pod).with_context(|| format!("{file}: toolgate"))?;
        assert_hardened(file, toolgate);
        for container in strings_of(pod, "containers") {
            assert_hardened(&format!("{file} {}", container["name"]), container);
        }
        // Probes: liveness on /healthz, readiness on /readyz.
        assert_eq!(
            probe_path(&toolgate["livenessProbe"], binary),
            Some("/healthz"),
            "{file}"
        );
        assert_eq!(
            probe_path(&toolgate["readinessProbe"], binary),
            Some("/readyz"),
            "{file}"
        );
        assert!(
            probe_path(&toolgate["startupProbe"], binary).is_some(),
            "{file}"
        );
        // Resources set, requests within limits.
        let resources = &toolgate["resources"];
        for key in ["requests", "limits"] {
            for what in ["cpu", "memory"] {
                assert!(resources[key][what].is_string(), "{file}: {key}.{what}");
            }
        }
        // SIGTERM comes after the preStop sleep; the drain must end before SIGKILL.
        let grace = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .context("terminationGracePeriodSeconds")?;
        let pre_stop = toolgate["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_u64()
            .unwrap_or(0);
        assert!(
            grace > pre_stop + drain,
            "{file}: grace {grace}s <= preStop {pre_stop}s + drain {drain}s"
        );
        // Secrets come from the Secret; the API key never reaches another container.
        assert_eq!(
            toolgate["envFrom"][0]["secretRef"]["name"], secret_name,
            "{file}"
        );
        for container in strings_of(pod, "containers") {
            if container["name"] == "toolgate" {
                continue;
            }
            let env = container["env"].as_array().cloned().unwrap_or_default();
            for var in &env {
                if let Some(key) = var["valueFrom"]["secretKeyRef"]["key"].as_str() {
                    assert_ne!(
                        key, "COMPOSIO_API_KEY",
                        "{file}: API key given to the agent"
                    );
                    assert!(secret_keys.iter().any(|k| *k == key), "{file}: {key}");
                }
            }
            assert!(
                container["envFrom"].is_null(),
                "{file}: agent gets the whole Secret"
            );
        }
        // The config file is mounted where the image looks for it.
        let mount = toolgate["volumeMounts"][0]["mountPath"]
            .as_str()
            .context("config mount")?;
        assert_eq!(
            mount,
            image["workdir"].as_str().context("WORKDIR")?,
            "{file}"
        );
    }

    // Standalone: Service and PDB select the Deployment's pods; the port is the probed one.
    let docs = read_structured(&deploy_file("k8s/standalone.yaml")).await?;
    let deployment = find(&docs, "Deployment")[0];
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let service = find(&docs, "Service")[0];
    let pdb = find(&docs, "PodDisruptionBudget")[0];
    for (what, selector) in [
        ("service", &service["spec"]["selector"]),
        ("pdb", &pdb["spec"]["selector"]["matchLabels"]),
    ] {
        for (key, value) in selector.as_object().context("selector")? {
            assert_eq!(&labels[key], value, "{what} selector {key}");
        }
    }
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap_or(1);
    assert!(replicas >= 3, "standalone should run replicas");
    // Sealed session ids make every replica serve every session: no stickiness, and an HPA
    // on CPU scaling this Deployment.
    assert!(
        service["spec"]["sessionAffinity"].is_null(),
        "no sessionAffinity"
    );
    let hpa = find(&docs, "HorizontalPodAutoscaler")[0];
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    assert_eq!(hpa["spec"]["metrics"][0]["resource"]["name"], "cpu");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap_or(0) >= 3);
    assert!(pdb["spec"]["minAvailable"].as_u64().unwrap_or(0) < replicas);
    let container = toolgate_container(&deployment["spec"]["template"]["spec"]).context("c")?;
    let port_name = service["spec"]["ports"][0]["targetPort"]
        .as_str()
        .context("port")?;
    assert_eq!(container["ports"][0]["name"], port_name);
    // Clients address the Service by name: the config must accept that Host.
    let service_name = service["metadata"]["name"].as_str().context("name")?;
    assert!(
        strings(&config["allowed_hosts"])
            .iter()
            .any(|host| host == service_name),
        "allowed_hosts lacks {service_name}"
    );
    Ok(())
}

fn strings_of<'a>(pod: &'a Value, list: &str) -> Vec<&'a Value> {
    pod[list]
        .as_array()
        .map(|items| items.iter().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn compose_gates_the_agent_on_a_ready_toolgate() -> anyhow::Result<()> {
    let image = image_config().await?;
    let binary = image["entrypoint"][0].as_str().context("ENTRYPOINT")?;
    let docs = read_structured(&deploy_file("compose.yaml")).await?;
    let services = &docs[0]["services"];
    let toolgate = &services["toolgate"];
    let agent = &services["agent"];
    assert_eq!(
        agent["depends_on"]["toolgate"]["condition"], "service_healthy",
        "the agent must wait for a healthy toolgate"
    );
    assert_eq!(
        strings(&toolgate["healthcheck"]["test"]),
        ["CMD", binary, "healthcheck", "--ready"]
    );
    assert_eq!(toolgate["build"]["dockerfile"], "deploy/Dockerfile");
    assert_eq!(toolgate["read_only"], true);
    assert_eq!(strings(&toolgate["cap_drop"]), ["ALL"]);
    let drain = seconds(
        toolgate["environment"]["TOOLGATE_DRAIN_TIMEOUT"]
            .as_str()
            .context("TOOLGATE_DRAIN_TIMEOUT")?,
    )?;
    let grace = seconds(toolgate["stop_grace_period"].as_str().context("grace")?)?;
    assert!(
        grace > drain,
        "stop_grace_period {grace}s <= drain {drain}s"
    );
    // The agent reaches toolgate by service name, which toolgate accepts as Host.
    let url = agent["environment"]["MCP_URL"]
        .as_str()
        .context("MCP_URL")?;
    assert!(url.starts_with("http://toolgate:"), "{url}");
    assert_eq!(
        toolgate["environment"]["TOOLGATE_ALLOWED_HOSTS"],
        "toolgate"
    );
    // Published on the host's loopback only.
    for port in strings(&toolgate["ports"]) {
        assert!(port.starts_with("127.0.0.1:"), "{port}");
    }
    // The agent gets the token, never the env file with the API key.
    assert!(agent["env_file"].is_null());
    let agent_env = agent["environment"].to_string();
    assert!(!agent_env.contains("COMPOSIO_API_KEY"), "{agent_env}");
    assert_eq!(toolgate["env_file"][0]["path"], "./toolgate.env");
    Ok(())
}
