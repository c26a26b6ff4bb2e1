//! Layering and validation of the configuration, with figment's `Jail` (never `set_var`).

use super::*;
use figment::Jail;
use toolgate_proxy::upstream::UpstreamTimeouts;

const KEY: &str = "sk_test_do_not_print_0123456789";

fn args() -> ConfigArgs {
    ConfigArgs::default()
}

/// Runs `check` inside a jail, turning our error type into figment's so `?` works.
#[allow(clippy::result_large_err)] // figment's Jail dictates the error type.
fn jail(check: impl FnOnce(&mut Jail) -> Result<(), ConfigError>) {
    Jail::expect_with(|jail| check(jail).map_err(|error| error.to_string().into()));
}

fn key_of(result: Result<Config, ConfigError>) -> String {
    match result {
        Ok(_) => panic!("expected a config error"),
        Err(error) => error.key,
    }
}

#[test]
fn defaults_then_file_then_env_then_flags() {
    jail(|jail| {
        jail.create_file(
            "toolgate.toml",
            r#"
                user_id = "from-file"
                require = ["gmail"]
                listen = "127.0.0.1:9000"
                [composio]
                api_key = "sk_from_file_000000"
                [log]
                level = "debug"
            "#,
        )
        .map_err(|e| ConfigError::new("jail", e.to_string()))?;
        let config = load(&args())?;
        assert_eq!(config.user_id.as_deref(), Some("from-file"));
        assert_eq!(config.require, ["gmail"]);
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.log.level, "debug");
        assert_eq!(config.path, "/mcp", "default kept");
        assert_eq!(config.composio.base_url, DEFAULT_BASE_URL);

        jail.set_env("TOOLGATE_USER_ID", "from-env");
        jail.set_env("TOOLGATE_REQUIRE", "gmail, github");
        jail.set_env("COMPOSIO_BASE_URL", "http://127.0.0.1:1234");
        jail.set_env("TOOLGATE_LOG_LEVEL", "warn");
        let config = load(&args())?;
        assert_eq!(config.user_id.as_deref(), Some("from-env"));
        assert_eq!(config.require, ["gmail", "github"]);
        assert_eq!(config.composio.base_url, "http://127.0.0.1:1234");
        assert_eq!(config.log.level, "warn");

        let flags = ConfigArgs {
            user_id: Some("from-flag".into()),
            require: vec!["slack".into()],
            listen: Some("127.0.0.1:9100".into()),
            ..args()
        };
        let config = load(&flags)?;
        assert_eq!(config.user_id.as_deref(), Some("from-flag"));
        assert_eq!(config.require, ["slack"]);
        assert_eq!(config.listen.port(), 9100);
        Ok(())
    });
}

#[test]
fn toolgate_prefix_beats_sdk_variable_and_unrelated_vars_are_ignored() {
    jail(|jail| {
        jail.set_env("COMPOSIO_API_KEY", "sk_sdk_variable_0000");
        jail.set_env("TOOLGATE_COMPOSIO_API_KEY", KEY);
        jail.set_env("TOOLGATE_USER_ID", "12345");
        jail.set_env("TOOLGATE_BIN", "/somewhere/toolgate");
        jail.set_env("TOOLGATE_PEERS", "/somewhere/peers");
        let config = load(&args())?;
        assert_eq!(config.api_key().map(|k| k.expose_secret()), Some(KEY));
        assert_eq!(
            config.user_id.as_deref(),
            Some("12345"),
            "numeric-looking ids stay strings"
        );
        Ok(())
    });
}

#[test]
fn explicit_config_file_and_nested_sections() {
    jail(|jail| {
        jail.create_file(
            "custom.toml",
            r#"
                user_id = "u"
                require = ["gmail", "github"]
                [composio]
                api_key = "sk_file_0000000000"
                [session]
                manage_connections = true
                toolkits_enable = ["gmail", "github", "slack"]
                auth_configs = { gmail = "ac_123" }
                connected_accounts = { github = "ca_456" }
                [gate]
                mode = "wait"
                wait_timeout = "45s"
            "#,
        )
        .map_err(|e| ConfigError::new("jail", e.to_string()))?;
        let config = load(&ConfigArgs {
            config: Some("custom.toml".into()),
            ..args()
        })?;
        assert!(config.session.manage_connections);
        assert_eq!(config.session.auth_configs["gmail"], "ac_123");
        assert_eq!(config.session.connected_accounts["github"], ["ca_456"]);
        assert_eq!(config.gate.mode, GateMode::Wait);
        assert_eq!(config.gate.wait_timeout, Duration::from_secs(45));
        Ok(())
    });
}

#[test]
fn errors_name_the_key() {
    jail(|jail| {
        jail.set_env("COMPOSIO_API_KEY", KEY);
        jail.set_env("TOOLGATE_USER_ID", "u");
        assert_eq!(
            key_of(load(&ConfigArgs {
                config: Some("missing.toml".into()),
                ..args()
            })),
            "--config"
        );

        jail.set_env("TOOLGATE_LISTEN", "not-an-address");
        assert_eq!(key_of(load(&args())), "listen");
        jail.set_env("TOOLGATE_LISTEN", "0.0.0.0:8787");
        assert_eq!(key_of(load(&args())), "token", "non-loopback needs a token");
        jail.set_env("TOOLGATE_TOKEN", "short");
        assert_eq!(key_of(load(&args())), "token");
        jail.set_env("TOOLGATE_TOKEN", "a-long-enough-token-123");
        load(&args())?;
        jail.set_env("TOOLGATE_LISTEN", "127.0.0.1:8787");

        jail.set_env("TOOLGATE_GATE_MODE", "sometimes");
        assert_eq!(key_of(load(&args())), "gate.mode");
        jail.set_env("TOOLGATE_GATE_MODE", "wait");
        jail.set_env("TOOLGATE_GATE_WAIT_TIMEOUT", "soon");
        assert_eq!(key_of(load(&args())), "gate.wait_timeout");
        jail.set_env("TOOLGATE_GATE_WAIT_TIMEOUT", "0s");
        assert_eq!(key_of(load(&args())), "gate.wait_timeout");
        jail.set_env("TOOLGATE_GATE_WAIT_TIMEOUT", "10s");

        jail.set_env("TOOLGATE_REQUIRE", "Gmail!");
        assert_eq!(key_of(load(&args())), "require");
        jail.set_env("TOOLGATE_REQUIRE", "gmail");

        jail.set_env("TOOLGATE_PATH", "/healthz");
        assert_eq!(key_of(load(&args())), "path");
        jail.set_env("TOOLGATE_PATH", "mcp");
        assert_eq!(key_of(load(&args())), "path");
        jail.set_env("TOOLGATE_PATH", "/mcp");

        jail.set_env("TOOLGATE_LOG_LEVEL", "loud[");
        assert_eq!(key_of(load(&args())), "log.level");
        jail.set_env("TOOLGATE_LOG_LEVEL", "info");
        jail.set_env("TOOLGATE_LOG_FORMAT", "xml");
        assert_eq!(key_of(load(&args())), "log.format");
        jail.set_env("TOOLGATE_LOG_FORMAT", "json");

        jail.set_env("TOOLGATE_COMPOSIO_BASE_URL", "ftp://example.com");
        assert_eq!(key_of(load(&args())), "composio.base_url");
        jail.set_env("TOOLGATE_COMPOSIO_BASE_URL", "http://127.0.0.1:1");

        jail.set_env("TOOLGATE_ALLOWED_ORIGINS", "example.com");
        assert_eq!(key_of(load(&args())), "allowed_origins");
        jail.set_env("TOOLGATE_ALLOWED_ORIGINS", "https://app.example.com");

        jail.set_env("TOOLGATE_SESSION_ID", "abc");
        assert_eq!(key_of(load(&args())), "session.id");
        jail.set_env("TOOLGATE_SESSION_ID", "trs_abc");

        jail.set_env("TOOLGATE_SESSION_TOOLKITS_ENABLE", "slack");
        assert_eq!(key_of(load(&args())), "session.toolkits_enable");
        jail.set_env("TOOLGATE_SESSION_TOOLKITS_ENABLE", "gmail,slack");
        load(&args())?;
        Ok(())
    });
}

#[test]
fn composio_mode_needs_key_and_user() {
    jail(|jail| {
        assert_eq!(key_of(load(&args())), "composio.api_key");
        jail.set_env("COMPOSIO_API_KEY", KEY);
        assert_eq!(key_of(load(&args())), "user_id");
        jail.set_env("TOOLGATE_USER_ID", "  ");
        assert_eq!(key_of(load(&args())), "user_id");
        Ok(())
    });
}

#[test]
fn generic_mode_rules() {
    jail(|jail| {
        let generic = |headers: Vec<&str>| ConfigArgs {
            upstream: Some("http://127.0.0.1:3001/mcp".into()),
            headers: headers.into_iter().map(str::to_owned).collect(),
            ..args()
        };
        let config = load(&generic(vec!["X-Api-Key: abc", "x-other:def"]))?;
        assert_eq!(config.mode(), Mode::Generic);
        assert_eq!(key_of(load(&generic(vec!["no colon here"]))), "headers");
        assert_eq!(key_of(load(&generic(vec!["bad name: x"]))), "headers");
        assert_eq!(
            key_of(load(&ConfigArgs {
                upstream: Some("not a url".into()),
                ..args()
            })),
            "upstream.url"
        );
        jail.set_env("TOOLGATE_REQUIRE", "gmail");
        assert_eq!(key_of(load(&generic(vec![]))), "require");
        Ok(())
    });
}

#[test]
fn unknown_file_keys_are_rejected_by_name() {
    jail(|jail| {
        jail.create_file("toolgate.toml", "user_idd = \"typo\"\n")
            .map_err(|e| ConfigError::new("jail", e.to_string()))?;
        let error = load(&args())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("user_idd"), "{error}");
        Ok(())
    });
}

#[test]
fn redacted_output_hides_secrets() {
    jail(|jail| {
        jail.set_env("COMPOSIO_API_KEY", KEY);
        jail.set_env("TOOLGATE_USER_ID", "u");
        jail.set_env("TOOLGATE_TOKEN", "inbound-token-secret-value");
        let config = load(&args())?;
        let text = config
            .to_redacted_toml()
            .map_err(|e| ConfigError::new("toml", e.to_string()))?;
        assert!(!text.contains(KEY), "{text}");
        assert!(!text.contains("inbound-token-secret-value"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
        assert!(text.contains("user_id = \"u\""), "{text}");
        let debug = format!("{config:?}");
        assert!(!debug.contains(KEY) && !debug.contains("inbound-token-secret-value"));

        let generic = load(&ConfigArgs {
            upstream: Some("http://127.0.0.1:3001/mcp".into()),
            headers: vec!["Authorization: Bearer hunter2hunter2".into()],
            ..args()
        })?;
        let text = generic
            .to_redacted_toml()
            .map_err(|e| ConfigError::new("toml", e.to_string()))?;
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("Authorization: <redacted>"), "{text}");
        Ok(())
    });
}

#[test]
fn callback_url_defaults_to_own_listener() {
    let mut config = Config::default();
    assert_eq!(
        config.effective_callback_url(),
        "http://127.0.0.1:8787/callback"
    );
    config.listen = "0.0.0.0:9000".parse().unwrap_or(config.listen);
    assert_eq!(
        config.effective_callback_url(),
        "http://127.0.0.1:9000/callback"
    );
    config.callback_url = Some("https://gw.example.com/callback?tenant=a".into());
    assert_eq!(
        config.effective_callback_url(),
        "https://gw.example.com/callback?tenant=a"
    );
}

/// The example file parses, and documents every key the config has (set or commented out).
#[test]
fn example_file_documents_every_key() {
    let example_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/toolgate.example.toml"
    );
    let example = std::fs::read_to_string(example_path).unwrap();
    jail(|jail| {
        jail.set_env("COMPOSIO_API_KEY", KEY);
        jail.set_env("TOOLGATE_USER_ID", "u");
        let config = load(&ConfigArgs {
            config: Some(example_path.into()),
            ..args()
        })?;
        assert_eq!(config.listen.port(), 8787);
        Ok(())
    });
    let defaults = toml::Value::try_from(Config {
        token: Some(SecretString::from("x")),
        composio: ComposioSection {
            api_key: Some(SecretString::from("x")),
            ..ComposioSection::default()
        },
        user_id: Some("u".into()),
        callback_url: Some("http://x".into()),
        upstream: UpstreamSection {
            url: Some("http://x".into()),
            ..UpstreamSection::default()
        },
        session: SessionSection {
            id: Some("trs_x".into()),
            ..SessionSection::default()
        },
        ..Config::default()
    })
    .unwrap();
    let documented = |key: &str| {
        example.lines().any(|line| {
            let line = line.trim_start_matches('#').trim();
            line.starts_with(&format!("{key} ="))
                || line == format!("[session.{key}]")
                || line == format!("[auth.{key}]")
        })
    };
    let mut keys = Vec::new();
    for (key, value) in defaults.as_table().unwrap() {
        match value.as_table() {
            Some(section) if !["auth_configs", "connected_accounts"].contains(&key.as_str()) => {
                assert!(example.contains(&format!("[{key}]")), "section [{key}]");
                keys.extend(section.keys().cloned());
            }
            _ => keys.push(key.clone()),
        }
    }
    for key in keys {
        assert!(
            documented(&key),
            "config/toolgate.example.toml does not document `{key}`"
        );
    }
}

#[test]
fn empty_environment_variables_count_as_unset() {
    jail(|jail| {
        jail.create_file(
            "toolgate.toml",
            "user_id = \"from-file\"\n[composio]\napi_key = \"sk_from_file_000000\"\n",
        )
        .map_err(|e| ConfigError::new("jail", e.to_string()))?;
        jail.set_env("TOOLGATE_USER_ID", "");
        jail.set_env("TOOLGATE_SESSION_ID", "");
        jail.set_env("COMPOSIO_BASE_URL", "");
        let config = load(&args())?;
        assert_eq!(
            config.user_id.as_deref(),
            Some("from-file"),
            "file value kept"
        );
        assert_eq!(config.composio.base_url, DEFAULT_BASE_URL, "default kept");
        assert!(config.session.id.is_none(), "no session id");
        Ok(())
    });
}

fn generic_flags(upstream: &str, headers: &[&str]) -> ConfigArgs {
    ConfigArgs {
        upstream: Some(upstream.to_owned()),
        headers: headers.iter().map(|h| (*h).to_owned()).collect(),
        ..ConfigArgs::default()
    }
}

fn load_generic(config: &ConfigArgs, http: &HttpArgs) -> Result<Config, ConfigError> {
    load_with(Flags { config, http }, &Config::default())
}

#[test]
fn generic_mode_is_layered_like_composio_mode() {
    jail(|jail| {
        jail.create_file(
            "toolgate.toml",
            "upstream = \"http://127.0.0.1:3001/mcp\"\npath = \"/from-file\"\nmax_body_bytes = 1000\n",
        )
        .map_err(|e| ConfigError::new("jail", e.to_string()))?;
        let config = load(&args())?;
        assert_eq!(config.mode(), Mode::Generic);
        assert_eq!(config.proxy_config().mcp_path, "/from-file");
        assert_eq!(config.proxy_config().max_body_bytes, 1000);
        jail.set_env("TOOLGATE_MAX_BODY_BYTES", "2000");
        jail.set_env("TOOLGATE_CONNECT_TIMEOUT", "3s");
        jail.set_env("TOOLGATE_ALLOWED_ORIGINS", "https://app.example");
        let config = load(&args())?;
        assert_eq!(config.proxy_config().max_body_bytes, 2000);
        assert_eq!(
            config.stdio_config().connect_timeout,
            Duration::from_secs(3)
        );
        let http = HttpArgs {
            mcp_path: Some("/from-flag".into()),
            max_body_bytes: Some(3000),
            allowed_origins: vec!["https://other.example".into()],
            ..HttpArgs::default()
        };
        let config = load_generic(&args(), &http)?;
        let proxy = config.proxy_config();
        assert_eq!(proxy.mcp_path, "/from-flag");
        assert_eq!(proxy.max_body_bytes, 3000);
        assert_eq!(
            proxy.allowed_origins,
            ["https://app.example", "https://other.example"],
            "--allow-origin adds to the configured list"
        );
        assert_eq!(proxy.wait, WaitMode::Off, "generic mode never holds calls");
        Ok(())
    });
}

#[test]
fn token_env_names_the_variable_and_the_strength_rule_holds() {
    jail(|jail| {
        jail.set_env("MY_TOKEN", "token-from-my-var-0123");
        let http = HttpArgs {
            token_env: Some("MY_TOKEN".into()),
            ..HttpArgs::default()
        };
        let flags = generic_flags("http://127.0.0.1:1/mcp", &[]);
        let config = load_generic(&flags, &http)?;
        let token = config.token.as_ref().map(|t| t.expose_secret().to_owned());
        assert_eq!(token.as_deref(), Some("token-from-my-var-0123"));
        jail.set_env("MY_TOKEN", "short");
        assert_eq!(key_of(load_generic(&flags, &http)), "token");
        // The same rule in Composio mode.
        jail.set_env("COMPOSIO_API_KEY", KEY);
        jail.set_env("TOOLGATE_USER_ID", "u");
        jail.set_env("TOOLGATE_TOKEN", "short");
        assert_eq!(key_of(load(&args())), "token");
        Ok(())
    });
}

#[test]
fn plain_http_only_to_loopback_unless_allowed() {
    jail(|_| {
        let none = HttpArgs::default();
        for url in [
            "http://127.0.0.1:3001/mcp",
            "http://localhost/mcp",
            "https://mcp.example/mcp",
        ] {
            assert!(
                load_generic(&generic_flags(url, &[]), &none).is_ok(),
                "{url}"
            );
        }
        let error = load_generic(&generic_flags("http://mcp.example/mcp", &[]), &none).unwrap_err();
        assert_eq!(error.key, "upstream.url");
        assert!(error.message.contains("--allow-http"), "{error}");
        let mut allowed = generic_flags("http://mcp.example/mcp", &[]);
        allowed.allow_http = true;
        assert!(load_generic(&allowed, &none).is_ok());
        for bad in ["ftp://x/mcp", "not a url"] {
            assert_eq!(
                key_of(load_generic(&generic_flags(bad, &[]), &none)),
                "upstream.url"
            );
        }
        Ok(())
    });
}

#[test]
fn headers_from_file_then_flags() {
    jail(|jail| {
        jail.create_file("headers", "# secrets\nX-Team: red\nX-File: yes\n")
            .map_err(|e| ConfigError::new("jail", e.to_string()))?;
        let none = HttpArgs::default();
        let mut flags = generic_flags("https://mcp.example/mcp", &["X-Team:blue", "X-A: 1"]);
        flags.header_file = Some("headers".into());
        let target = load_generic(&flags, &none)?
            .generic_target()?
            .expect("generic");
        assert_eq!(target.headers["x-team"], "blue");
        assert_eq!(target.headers["x-file"], "yes");
        assert_eq!(target.headers["x-a"], "1");
        let broken = load_generic(
            &generic_flags("https://mcp.example/mcp", &["broken"]),
            &none,
        );
        let error = broken.unwrap_err();
        assert_eq!(error.key, "headers");
        assert!(error.message.starts_with("--header:"), "{error}");
        flags.header_file = Some("absent".into());
        let error = load_generic(&flags, &none).unwrap_err();
        assert_eq!(error.key, "header_file");
        assert!(error.message.contains("--header-file"), "{error}");
        // Composio mode sends its own headers.
        jail.set_env("COMPOSIO_API_KEY", KEY);
        jail.set_env("TOOLGATE_USER_ID", "u");
        jail.set_env("TOOLGATE_HEADER_FILE", "headers");
        assert_eq!(key_of(load(&args())), "header_file");
        Ok(())
    });
}

#[test]
fn missing_required_keys_are_listed_not_just_the_first() {
    jail(|jail| {
        let config = extract(
            Flags {
                config: &args(),
                http: &HttpArgs::default(),
            },
            &Config::default(),
        )?;
        let missing: Vec<&str> = config
            .missing_required()
            .iter()
            .map(|(key, _)| *key)
            .collect();
        assert_eq!(missing, ["composio.api_key", "user_id"]);
        jail.set_env("TOOLGATE_UPSTREAM", "http://127.0.0.1:1/mcp");
        let generic = load(&args())?;
        assert!(generic.missing_required().is_empty());
        Ok(())
    });
}

#[test]
fn limits_layer_from_file_and_env_and_bad_values_name_their_key() {
    jail(|jail| {
        jail.create_file(
            "toolgate.toml",
            r#"
                upstream = "http://127.0.0.1:9/mcp"
                [limits]
                header_timeout = "3s"
                max_connections = 40
            "#,
        )
        .map_err(|e| ConfigError::new("jail", e.to_string()))?;
        let limits = load(&args())?.server_limits();
        assert_eq!(limits.header_timeout, Duration::from_secs(3));
        assert_eq!(limits.max_connections, 40);
        assert_eq!(limits.idle_timeout, Duration::from_secs(75), "default kept");

        jail.set_env("TOOLGATE_LIMITS_MAX_CONNECTIONS", "7");
        jail.set_env("TOOLGATE_LIMITS_BODY_IDLE_TIMEOUT", "250ms");
        let limits = load(&args())?.server_limits();
        assert_eq!(limits.max_connections, 7);
        assert_eq!(limits.body_idle_timeout, Duration::from_millis(250));

        jail.set_env("TOOLGATE_LIMITS_MAX_CONCURRENT_REQUESTS", "0");
        assert_eq!(key_of(load(&args())), "limits.max_concurrent_requests");
        jail.set_env("TOOLGATE_LIMITS_MAX_CONCURRENT_REQUESTS", "8");
        jail.set_env("TOOLGATE_LIMITS_BODY_TIMEOUT", "0s");
        assert_eq!(key_of(load(&args())), "limits.body_timeout");
        jail.set_env("TOOLGATE_LIMITS_BODY_TIMEOUT", "5s");
        jail.set_env("TOOLGATE_LIMITS_MAX_BUFFERED_BODY_BYTES", "1000");
        assert_eq!(key_of(load(&args())), "limits.max_buffered_body_bytes");
        jail.set_env("TOOLGATE_LIMITS_MAX_BUFFERED_BODY_BYTES", "lots");
        assert_eq!(key_of(load(&args())), "limits.max_buffered_body_bytes");
        Ok(())
    });
}

/// Every spelling of the upstream URL still works (the old string, the table, env, flag), and
/// the timeouts layer on top of any of them without losing the URL.
#[test]
fn upstream_string_or_table_with_timeouts_from_any_layer() {
    const URL: &str = "http://127.0.0.1:3001/mcp";
    jail(|jail| {
        let file = |jail: &mut Jail, text: &str| {
            jail.create_file("toolgate.toml", text)
                .map(drop)
                .map_err(|e| ConfigError::new("jail", e.to_string()))
        };
        file(jail, &format!("upstream = \"{URL}\"\n"))?;
        let config = load(&args())?;
        assert_eq!(config.upstream.url.as_deref(), Some(URL));
        assert_eq!(config.mode(), Mode::Generic);
        assert_eq!(
            config.proxy_config().upstream_timeouts,
            UpstreamTimeouts::default()
        );

        // A string in the file plus a timeout from the environment: both kept.
        jail.set_env("TOOLGATE_UPSTREAM_RESPONSE_TIMEOUT", "5s");
        jail.set_env("TOOLGATE_UPSTREAM_IDLE_TIMEOUT", "250ms");
        let config = load(&args())?;
        assert_eq!(config.upstream.url.as_deref(), Some(URL));
        let expected = UpstreamTimeouts {
            response: Duration::from_secs(5),
            body_idle: Duration::from_millis(250),
        };
        assert_eq!(config.proxy_config().upstream_timeouts, expected);
        assert_eq!(config.stdio_config().upstream_timeouts, expected);

        // The table form, with the environment's string overriding the file's URL.
        file(
            jail,
            &format!("[upstream]\nurl = \"{URL}\"\nresponse_timeout = \"7s\"\n"),
        )?;
        jail.set_env("TOOLGATE_UPSTREAM_RESPONSE_TIMEOUT", "");
        jail.set_env("TOOLGATE_UPSTREAM", "http://127.0.0.1:3002/mcp");
        let config = load(&args())?;
        assert_eq!(
            config.upstream.url.as_deref(),
            Some("http://127.0.0.1:3002/mcp")
        );
        assert_eq!(config.upstream.response_timeout, Duration::from_secs(7));
        assert_eq!(config.upstream.idle_timeout, Duration::from_millis(250));

        // The flag beats both and keeps the file's timeout.
        let config = load(&generic_flags("http://127.0.0.1:3003/mcp", &[]))?;
        assert_eq!(
            config.upstream.url.as_deref(),
            Some("http://127.0.0.1:3003/mcp")
        );
        assert_eq!(config.upstream.response_timeout, Duration::from_secs(7));

        // Composio mode takes the timeouts too (no URL anywhere).
        file(jail, "[upstream]\nresponse_timeout = \"9s\"\n")?;
        jail.set_env("TOOLGATE_UPSTREAM", "");
        jail.set_env("COMPOSIO_API_KEY", KEY);
        jail.set_env("TOOLGATE_USER_ID", "u");
        let config = load(&args())?;
        assert_eq!(config.mode(), Mode::Composio);
        assert_eq!(
            config.stdio_config().upstream_timeouts.response,
            Duration::from_secs(9)
        );

        jail.set_env("TOOLGATE_UPSTREAM_IDLE_TIMEOUT", "0s");
        assert_eq!(key_of(load(&args())), "upstream.idle_timeout");
        jail.set_env("TOOLGATE_UPSTREAM_IDLE_TIMEOUT", "soon");
        assert_eq!(key_of(load(&args())), "upstream.idle_timeout");
        file(jail, "[upstream]\nurl = \"http://x/mcp\"\nretries = 3\n")?;
        jail.set_env("TOOLGATE_UPSTREAM_IDLE_TIMEOUT", "");
        assert!(key_of(load(&args())).starts_with("upstream"));
        Ok(())
    });
}
