//! The demo app-tool catalog that `COMPOSIO_SEARCH_TOOLS`, `COMPOSIO_GET_TOOL_SCHEMAS` and
//! `COMPOSIO_MULTI_EXECUTE_TOOL` work on: a handful of tools per well-known toolkit, each with a
//! declared argument list (from which its JSON schema is generated and its arguments are
//! checked) and a deterministic fake result derived from the arguments, so tests can assert
//! exact outputs without any real SaaS behind the sandbox.

use serde_json::{Map, Value, json};

/// The JSON type an app-tool argument must have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParamKind {
    /// A JSON string.
    Text,
    /// A JSON integer within `min..=max`.
    Integer {
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// A JSON boolean.
    Flag,
    /// A JSON array of strings.
    TextList,
}

/// One declared argument of an app tool.
#[derive(Debug)]
pub(crate) struct Param {
    /// The argument's key in `arguments`.
    pub(crate) name: &'static str,
    /// Its JSON type.
    pub(crate) kind: ParamKind,
    /// Whether a call without it is rejected.
    pub(crate) required: bool,
    /// Shown in the schema, as Composio's schemas describe every field.
    pub(crate) description: &'static str,
}

/// An app tool of the demo catalog (e.g. `GMAIL_SEND_EMAIL`).
#[derive(Debug)]
pub(crate) struct AppTool {
    /// Upper-case tool slug, prefixed with the toolkit (Composio's naming).
    pub(crate) slug: &'static str,
    /// Lower-case toolkit slug the tool belongs to.
    pub(crate) toolkit: &'static str,
    /// What the tool does; also what search matches against.
    pub(crate) description: &'static str,
    /// Extra words search should match (synonyms a model might use).
    pub(crate) keywords: &'static [&'static str],
    /// The declared arguments.
    pub(crate) params: &'static [Param],
}

const fn text(name: &'static str, required: bool, description: &'static str) -> Param {
    Param {
        name,
        kind: ParamKind::Text,
        required,
        description,
    }
}

/// Every app tool the sandbox can run. A tool is only offered when its toolkit exists in the
/// sandbox's toolkit catalog (see `McpWorld::toolkits`) and is enabled for the session.
pub(crate) static APP_TOOLS: &[AppTool] = &[
    AppTool {
        slug: "GMAIL_SEND_EMAIL",
        toolkit: "gmail",
        description: "Send an email from the connected Gmail account.",
        keywords: &["email", "mail", "send", "message", "gmail"],
        params: &[
            text("recipient_email", true, "Email address of the recipient."),
            text("subject", true, "Subject line of the email."),
            text("body", true, "Plain-text (or HTML when is_html) body."),
            Param {
                name: "cc",
                kind: ParamKind::TextList,
                required: false,
                description: "Addresses to copy.",
            },
            Param {
                name: "is_html",
                kind: ParamKind::Flag,
                required: false,
                description: "Whether body is HTML.",
            },
        ],
    },
    AppTool {
        slug: "GMAIL_FETCH_EMAILS",
        toolkit: "gmail",
        description: "Fetch recent emails from the connected Gmail inbox, optionally filtered by a search query.",
        keywords: &["email", "mail", "inbox", "read", "fetch", "list", "gmail"],
        params: &[
            text("query", false, "Gmail search query, e.g. 'from:alice'."),
            Param {
                name: "max_results",
                kind: ParamKind::Integer { min: 1, max: 50 },
                required: false,
                description: "How many emails to return (1-50, default 5).",
            },
        ],
    },
    AppTool {
        slug: "GITHUB_CREATE_ISSUE",
        toolkit: "github",
        description: "Create an issue in a GitHub repository.",
        keywords: &["issue", "bug", "ticket", "github", "repository", "create"],
        params: &[
            text("owner", true, "Repository owner (user or organisation)."),
            text("repo", true, "Repository name."),
            text("title", true, "Issue title."),
            text("body", false, "Issue body in Markdown."),
            Param {
                name: "labels",
                kind: ParamKind::TextList,
                required: false,
                description: "Labels to apply.",
            },
        ],
    },
    AppTool {
        slug: "GITHUB_STAR_A_REPOSITORY",
        toolkit: "github",
        description: "Star a GitHub repository for the authenticated user.",
        keywords: &["star", "github", "repository", "favorite", "like"],
        params: &[
            text("owner", true, "Repository owner."),
            text("repo", true, "Repository name."),
        ],
    },
    AppTool {
        slug: "SLACK_SEND_MESSAGE",
        toolkit: "slack",
        description: "Post a message to a Slack channel.",
        keywords: &["message", "chat", "post", "channel", "send", "slack"],
        params: &[
            text("channel", true, "Channel id or name, e.g. '#general'."),
            text("text", true, "Message text."),
        ],
    },
    AppTool {
        slug: "NOTION_CREATE_PAGE",
        toolkit: "notion",
        description: "Create a page in Notion under a parent page.",
        keywords: &["page", "note", "document", "notion", "create", "write"],
        params: &[
            text("parent_id", true, "Id of the parent page."),
            text("title", true, "Page title."),
            text("markdown", false, "Page content in Markdown."),
        ],
    },
    AppTool {
        slug: "LINEAR_CREATE_ISSUE",
        toolkit: "linear",
        description: "Create an issue in a Linear team.",
        keywords: &["issue", "ticket", "task", "bug", "linear", "create"],
        params: &[
            text("team_id", true, "Id of the Linear team."),
            text("title", true, "Issue title."),
            text("description", false, "Issue description in Markdown."),
        ],
    },
    AppTool {
        slug: "HACKERNEWS_GET_FRONTPAGE",
        toolkit: "hackernews",
        description: "List the stories currently on the Hacker News front page (no authentication needed).",
        keywords: &[
            "news",
            "stories",
            "hacker",
            "frontpage",
            "headlines",
            "hackernews",
        ],
        params: &[Param {
            name: "limit",
            kind: ParamKind::Integer { min: 1, max: 30 },
            required: false,
            description: "How many stories to return (1-30, default 5).",
        }],
    },
];

/// Looks an app tool up by slug (case-insensitive, as Composio accepts).
pub(crate) fn find(slug: &str) -> Option<&'static AppTool> {
    APP_TOOLS
        .iter()
        .find(|tool| tool.slug.eq_ignore_ascii_case(slug))
}

// === impl AppTool ===

impl AppTool {
    /// The tool's input schema as a JSON Schema object.
    pub(crate) fn input_schema(&self) -> Value {
        let mut properties = Map::new();
        for param in self.params {
            let mut property = match param.kind {
                ParamKind::Text => json!({"type": "string"}),
                ParamKind::Integer { min, max } => {
                    json!({"type": "integer", "minimum": min, "maximum": max})
                }
                ParamKind::Flag => json!({"type": "boolean"}),
                ParamKind::TextList => json!({"type": "array", "items": {"type": "string"}}),
            };
            property["description"] = Value::from(param.description);
            properties.insert(param.name.to_owned(), property);
        }
        let required: Vec<&str> = self
            .params
            .iter()
            .filter(|param| param.required)
            .map(|param| param.name)
            .collect();
        json!({
            "type": "object",
            "properties": properties,
            "required": required,
            "additionalProperties": false,
        })
    }

    /// Checks `arguments` against the declared parameters; the error text names the argument.
    pub(crate) fn check_arguments(&self, arguments: &Map<String, Value>) -> Result<(), String> {
        for key in arguments.keys() {
            if !self.params.iter().any(|param| param.name == key) {
                return Err(format!("unknown argument '{key}' for {}", self.slug));
            }
        }
        for param in self.params {
            let Some(value) = arguments.get(param.name).filter(|value| !value.is_null()) else {
                if param.required {
                    return Err(format!(
                        "missing required argument '{}' for {}",
                        param.name, self.slug
                    ));
                }
                continue;
            };
            let fits = match param.kind {
                ParamKind::Text => value.is_string(),
                ParamKind::Integer { min, max } => {
                    value.as_i64().is_some_and(|n| (min..=max).contains(&n))
                }
                ParamKind::Flag => value.is_boolean(),
                ParamKind::TextList => value
                    .as_array()
                    .is_some_and(|items| items.iter().all(Value::is_string)),
            };
            if !fits {
                let expected = match param.kind {
                    ParamKind::Text => "a string".to_owned(),
                    ParamKind::Integer { min, max } => {
                        format!("an integer between {min} and {max}")
                    }
                    ParamKind::Flag => "a boolean".to_owned(),
                    ParamKind::TextList => "an array of strings".to_owned(),
                };
                return Err(format!(
                    "argument '{}' of {} must be {expected}",
                    param.name, self.slug
                ));
            }
        }
        Ok(())
    }

    /// The deterministic fake result of running the tool for `user_id` with (already checked)
    /// `arguments`: the same inputs always give the same output.
    pub(crate) fn run(&self, user_id: &str, arguments: &Map<String, Value>) -> Value {
        let text_arg = |name: &str| arguments.get(name).and_then(Value::as_str).unwrap_or("");
        let count_arg = |name: &str, default: i64| {
            arguments
                .get(name)
                .and_then(Value::as_i64)
                .unwrap_or(default)
        };
        // Every id is a hash of the tool, the user and the arguments, so a repeated call
        // reproduces the same id and different arguments give different ids.
        let digest = fingerprint(&[
            self.slug,
            user_id,
            &Value::Object(arguments.clone()).to_string(),
        ]);
        match self.slug {
            "GMAIL_SEND_EMAIL" => json!({
                "id": format!("msg_{digest:016x}"),
                "threadId": format!("thr_{digest:016x}"),
                "labelIds": ["SENT"],
                "to": text_arg("recipient_email"),
            }),
            "GMAIL_FETCH_EMAILS" => {
                let wanted = count_arg("max_results", 5);
                let messages: Vec<Value> = (0..wanted)
                    .map(|index| {
                        json!({
                            "messageId": format!("msg_{:016x}", fingerprint(&[user_id, &index.to_string(), text_arg("query")])),
                            "subject": format!("Sandbox message {}", index + 1),
                            "sender": "sandbox@example.com",
                            "preview": format!("Message {} for {user_id}", index + 1),
                        })
                    })
                    .collect();
                json!({"messages": messages, "resultSizeEstimate": wanted})
            }
            "GITHUB_CREATE_ISSUE" => {
                let number = digest % 9000 + 1000;
                json!({
                    "number": number,
                    "title": text_arg("title"),
                    "state": "open",
                    "html_url": format!("https://github.com/{}/{}/issues/{number}", text_arg("owner"), text_arg("repo")),
                })
            }
            "GITHUB_STAR_A_REPOSITORY" => json!({
                "starred": true,
                "full_name": format!("{}/{}", text_arg("owner"), text_arg("repo")),
            }),
            "SLACK_SEND_MESSAGE" => json!({
                "ok": true,
                "channel": text_arg("channel"),
                "ts": format!("1700000000.{:06}", digest % 1_000_000),
                "text": text_arg("text"),
            }),
            "NOTION_CREATE_PAGE" => {
                let page_id = format!("{digest:016x}{:016x}", fingerprint(&[&digest.to_string()]));
                json!({
                    "id": page_id,
                    "title": text_arg("title"),
                    "url": format!("https://www.notion.so/{page_id}"),
                })
            }
            "LINEAR_CREATE_ISSUE" => {
                let number = digest % 900 + 100;
                json!({
                    "id": format!("lin_{digest:016x}"),
                    "identifier": format!("SBX-{number}"),
                    "title": text_arg("title"),
                    "url": format!("https://linear.app/sandbox/issue/SBX-{number}"),
                })
            }
            "HACKERNEWS_GET_FRONTPAGE" => {
                let stories: Vec<Value> = (1..=count_arg("limit", 5))
                    .map(|rank| {
                        json!({
                            "rank": rank,
                            "title": format!("Sandbox story #{rank}"),
                            "url": format!("https://news.ycombinator.com/item?id={}", 40_000_000 + rank),
                        })
                    })
                    .collect();
                json!({"stories": stories})
            }
            // Every catalog entry has an arm above; a new entry without one still answers
            // something deterministic instead of panicking.
            _ => json!({"ok": true, "tool": self.slug}),
        }
    }
}

/// A stable 64-bit FNV-1a hash of the parts (std's hasher may change between releases, and
/// the fake ids should not).
pub(crate) fn fingerprint(parts: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

/// Lower-case words of `text` (letters and digits), for the search's keyword match.
pub(crate) fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// How well `tool` matches the query words: the number of distinct query words that appear
/// in its slug, toolkit, description or keywords. Zero means no match.
pub(crate) fn relevance(tool: &AppTool, query_words: &[String]) -> usize {
    let mut haystack = words(tool.slug);
    haystack.extend(words(tool.toolkit));
    haystack.extend(words(tool.description));
    haystack.extend(tool.keywords.iter().map(|word| (*word).to_owned()));
    let mut seen: Vec<&String> = Vec::new();
    for word in query_words {
        // Plural/verb-form tolerance: "emails" matches "email", "sending" does not need to.
        let stem = word.strip_suffix('s').unwrap_or(word);
        if !seen.contains(&word) && haystack.iter().any(|hay| hay == word || hay == stem) {
            seen.push(word);
        }
    }
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    #[test]
    fn every_tool_has_a_unique_slug_prefixed_by_its_toolkit() {
        for (index, tool) in APP_TOOLS.iter().enumerate() {
            assert!(
                tool.slug
                    .starts_with(&format!("{}_", tool.toolkit.to_uppercase())),
                "{}",
                tool.slug
            );
            assert!(
                APP_TOOLS[index + 1..]
                    .iter()
                    .all(|other| other.slug != tool.slug),
                "duplicate {}",
                tool.slug
            );
        }
    }

    #[test]
    fn argument_check_names_the_offending_argument() {
        let send = find("gmail_send_email").expect("catalog has GMAIL_SEND_EMAIL");
        let missing =
            send.check_arguments(&args(json!({"recipient_email": "a@b.c", "subject": "s"})));
        assert_eq!(
            missing,
            Err("missing required argument 'body' for GMAIL_SEND_EMAIL".to_owned())
        );
        let wrong_type = send.check_arguments(&args(
            json!({"recipient_email": 5, "subject": "s", "body": "b"}),
        ));
        assert_eq!(
            wrong_type,
            Err("argument 'recipient_email' of GMAIL_SEND_EMAIL must be a string".to_owned())
        );
        let unknown = send.check_arguments(&args(
            json!({"recipient_email": "a", "subject": "s", "body": "b", "bcc": "x"}),
        ));
        assert_eq!(
            unknown,
            Err("unknown argument 'bcc' for GMAIL_SEND_EMAIL".to_owned())
        );
        let fetch = find("GMAIL_FETCH_EMAILS").expect("catalog has GMAIL_FETCH_EMAILS");
        assert!(
            fetch
                .check_arguments(&args(json!({"max_results": 51})))
                .is_err()
        );
        assert!(
            fetch
                .check_arguments(&args(json!({"max_results": 50})))
                .is_ok()
        );
    }

    #[test]
    fn results_are_deterministic_and_depend_on_arguments() {
        let send = find("GMAIL_SEND_EMAIL").expect("catalog has GMAIL_SEND_EMAIL");
        let first = args(json!({"recipient_email": "a@b.c", "subject": "s", "body": "b"}));
        let second = args(json!({"recipient_email": "a@b.c", "subject": "s", "body": "c"}));
        assert_eq!(send.run("u1", &first), send.run("u1", &first));
        assert_ne!(send.run("u1", &first)["id"], send.run("u1", &second)["id"]);
        assert_ne!(send.run("u1", &first)["id"], send.run("u2", &first)["id"]);
    }

    #[test]
    fn schema_lists_required_fields() {
        let schema = find("SLACK_SEND_MESSAGE")
            .expect("catalog has SLACK_SEND_MESSAGE")
            .input_schema();
        assert_eq!(schema["required"], json!(["channel", "text"]));
        assert_eq!(schema["properties"]["text"]["type"], "string");
    }

    #[test]
    fn relevance_prefers_matching_tools() {
        let query = words("send an email to Bob");
        let send = find("GMAIL_SEND_EMAIL").expect("catalog has GMAIL_SEND_EMAIL");
        let star = find("GITHUB_STAR_A_REPOSITORY").expect("catalog has the star tool");
        assert!(relevance(send, &query) > relevance(star, &query));
        assert_eq!(relevance(star, &query), 0);
        assert!(relevance(send, &words("emails")) > 0);
    }
}
