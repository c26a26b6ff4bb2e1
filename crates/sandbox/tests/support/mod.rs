//! Shared helpers for the sandbox's HTTP tests: a small JSON client and envelope assertions.

#![allow(dead_code, unreachable_pub)]

use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;
use toolgate_sandbox::{DEMO_API_KEY, Sandbox, SandboxConfig};

/// One answer: status, headers and the body parsed as JSON (`Value::Null` when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    /// Asserts Composio's error envelope: status, code, slug, and the request id matching the
    /// `x-request-id` header.
    pub fn assert_error(&self, status: u16) {
        assert_eq!(self.status.as_u16(), status, "{}", self.text);
        let error = &self.json["error"];
        assert_eq!(error["status"], status, "{}", self.text);
        assert_eq!(error["code"], 10_000 + u64::from(status), "{}", self.text);
        assert!(
            error["slug"]
                .as_str()
                .is_some_and(|slug| slug.starts_with("HTTP_")),
            "{}",
            self.text
        );
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|message| !message.is_empty()),
            "{}",
            self.text
        );
        let header = self
            .headers
            .get("x-request-id")
            .and_then(|value| value.to_str().ok());
        assert!(
            header.is_some_and(|id| !id.is_empty()),
            "no x-request-id on {}",
            self.text
        );
        assert_eq!(error["request_id"].as_str(), header, "{}", self.text);
    }

    /// The `errors` list of an envelope.
    pub fn errors(&self) -> Vec<String> {
        self.json["error"]["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|error| error.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A string field of the JSON body.
    pub fn str(&self, pointer: &str) -> String {
        self.json
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

/// A client for one sandbox, sending the demo key unless told otherwise. Redirects are not
/// followed, so tests see the 303s of the link flow.
pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
}

impl Client {
    pub fn new(base: String) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client");
        Self { http, base }
    }

    /// Sends a request with an optional API key and raw body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&[u8]>,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_vec());
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, Some(DEMO_API_KEY), None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(
            Method::POST,
            path,
            Some(DEMO_API_KEY),
            Some(body.to_string().as_bytes()),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, Some(DEMO_API_KEY), None)
            .await
    }

    /// A control-plane POST (no key).
    pub async fn control(&self, path: &str, body: Option<&Value>) -> Answer {
        let bytes = body.map(|body| body.to_string().into_bytes());
        self.send(Method::POST, path, None, bytes.as_deref()).await
    }

    /// Creates a session and returns its id.
    pub async fn session(&self, body: Value) -> String {
        let answer = self.post("/api/v3.1/tool_router/session", &body).await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        answer.str("/session_id")
    }

    /// Mints a link; returns `(connected_account_id, link_token, redirect_url)`.
    pub async fn link(&self, session: &str, body: Value) -> (String, String, String) {
        let answer = self
            .post(
                &format!("/api/v3.1/tool_router/session/{session}/link"),
                &body,
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        (
            answer.str("/connected_account_id"),
            answer.str("/link_token"),
            answer.str("/redirect_url"),
        )
    }

    /// The status of a connected account.
    pub async fn account_status(&self, account: &str) -> String {
        self.get(&format!("/api/v3.1/connected_accounts/{account}"))
            .await
            .str("/status")
    }
}

/// A sandbox on the current runtime with the default config, and a client for it.
pub async fn start() -> (Sandbox, Client) {
    start_with(SandboxConfig::default()).await
}

pub async fn start_with(config: SandboxConfig) -> (Sandbox, Client) {
    let sandbox = Sandbox::start(config).await.expect("sandbox starts");
    let client = Client::new(sandbox.base_url());
    (sandbox, client)
}
