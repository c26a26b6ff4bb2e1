//! The messages toolgate writes itself about the gate: the blocked answer (an `isError` result
//! or -32042 URL elicitation), the progress notification while a call is held, and
//! `notifications/elicitation/complete`. Each exists once; both faces only frame them.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::value::RawValue;

use super::error::{URL_ELICITATION_REQUIRED, encode, error_body};
use crate::gate::PendingToolkit;

/// The protocol version from which results carry `resultType`.
pub const RESULT_TYPE_SINCE: &str = "2026-07-28";

/// A URL elicitation handed out in a -32042 answer, to be completed when its toolkit connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elicitation {
    /// The `elicitationId`: unique per blocked call and toolkit.
    pub id: String,
    /// The toolkit it asks the user to connect.
    pub slug: String,
}

/// A blocked answer and the elicitations it handed out (none for the text form).
#[derive(Debug)]
pub struct BlockedAnswer {
    /// The JSON-RPC message, echoing the caller's raw id.
    pub bytes: Vec<u8>,
    /// The elicitations in it.
    pub elicitations: Vec<Elicitation>,
}

/// The human text of a blocked call: which toolkits are missing and where to connect them.
pub fn blocked_text(pending: &[PendingToolkit]) -> String {
    blocked_text_with_page(pending, None)
}

/// [`blocked_text`] ending with the user's connections page, when there is one (multi-user
/// gateways hand each user a signed link to their own page).
pub fn blocked_text_with_page(pending: &[PendingToolkit], page: Option<&str>) -> String {
    let mut text = String::from(
        "This tool call was blocked by toolgate: the user has not connected every toolkit this \
         gateway requires yet. Ask the user to open each link below, authorize access, and then \
         retry the call.\n",
    );
    for toolkit in pending {
        let link = match &toolkit.connect_url {
            Some(url) => format!("connect at {url}"),
            None => "no Connect Link yet, retry shortly".to_owned(),
        };
        text.push_str(&format!(
            "\n- {} ({}): {} - {link}",
            toolkit.name, toolkit.slug, toolkit.status
        ));
    }
    if let Some(page) = page {
        text.push_str(&format!(
            "\n\nThe user's connections page (every toolkit's status, disconnect): {page}"
        ));
    }
    text
}

/// The progress message while a call is held: which toolkits still need connecting, and where.
pub fn waiting_text(pending: &[PendingToolkit]) -> String {
    let parts: Vec<String> = pending
        .iter()
        .map(|toolkit| match &toolkit.connect_url {
            Some(url) => format!("{} (connect at {url})", toolkit.name),
            None => format!("{} (waiting for a Connect Link)", toolkit.name),
        })
        .collect();
    format!("Waiting for the user to connect: {}", parts.join(", "))
}

#[derive(Serialize)]
struct TextContent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
}

#[derive(Serialize)]
struct ToolErrorResult<'a> {
    content: [TextContent<'a>; 1],
    #[serde(rename = "isError")]
    is_error: bool,
    #[serde(rename = "resultType", skip_serializing_if = "Option::is_none")]
    result_type: Option<&'static str>,
}

#[derive(Serialize)]
struct ResultResponse<'a, R: Serialize> {
    jsonrpc: &'static str,
    id: &'a RawValue,
    result: R,
}

#[derive(Serialize)]
struct UrlElicitation<'a> {
    mode: &'static str,
    #[serde(rename = "elicitationId")]
    elicitation_id: &'a str,
    url: &'a str,
    message: String,
}

#[derive(Serialize)]
struct ElicitationData<'a> {
    elicitations: Vec<UrlElicitation<'a>>,
}

#[derive(Serialize)]
struct ElicitationError<'a> {
    code: i64,
    message: &'a str,
    data: ElicitationData<'a>,
}

/// A fresh `elicitationId` for `slug`: a per-process random prefix and a counter, so ids never
/// repeat within a process and are unlikely to collide across restarts.
fn new_elicitation_id(slug: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static NONCE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let nonce = *NONCE.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("toolgate-{slug}-{nonce:016x}-{n}")
}

/// The answer to a blocked `tools/call`, echoing the caller's raw `id` byte for byte.
///
/// A client that declared URL elicitation gets -32042 with one elicitation per toolkit that has
/// a Connect Link; when none has one yet, every client gets the text form (an elicitation
/// without a URL would tell the client nothing). `resultType` is added only for 2026-07-28
/// and later, whose clients expect it and older ones do not.
pub fn blocked_answer(
    id: &RawValue,
    pending: &[PendingToolkit],
    url_elicitation: bool,
    protocol_version: Option<&str>,
) -> BlockedAnswer {
    blocked_answer_with_page(id, pending, None, url_elicitation, protocol_version)
}

/// [`blocked_answer`] whose text ends with the user's connections `page` when given.
pub fn blocked_answer_with_page(
    id: &RawValue,
    pending: &[PendingToolkit],
    page: Option<&str>,
    url_elicitation: bool,
    protocol_version: Option<&str>,
) -> BlockedAnswer {
    let text = blocked_text_with_page(pending, page);
    let linked: Vec<(&PendingToolkit, &str)> = pending
        .iter()
        .filter_map(|toolkit| Some((toolkit, toolkit.connect_url.as_deref()?)))
        .collect();
    if !url_elicitation || linked.is_empty() {
        let result = ToolErrorResult {
            content: [TextContent {
                kind: "text",
                text: &text,
            }],
            is_error: true,
            result_type: protocol_version
                .is_some_and(|version| version >= RESULT_TYPE_SINCE)
                .then_some("complete"),
        };
        let bytes = encode(&ResultResponse {
            jsonrpc: "2.0",
            id,
            result,
        });
        return BlockedAnswer {
            bytes,
            elicitations: Vec::new(),
        };
    }
    let elicitations: Vec<Elicitation> = linked
        .iter()
        .map(|(toolkit, _)| Elicitation {
            id: new_elicitation_id(&toolkit.slug),
            slug: toolkit.slug.clone(),
        })
        .collect();
    let error = ElicitationError {
        code: URL_ELICITATION_REQUIRED,
        message: &text,
        data: ElicitationData {
            elicitations: linked
                .iter()
                .zip(&elicitations)
                .map(|((toolkit, url), elicitation)| UrlElicitation {
                    mode: "url",
                    elicitation_id: &elicitation.id,
                    url,
                    message: format!("Connect {} to continue.", toolkit.name),
                })
                .collect(),
        },
    };
    BlockedAnswer {
        bytes: error_body(Some(id), &error),
        elicitations,
    }
}

#[derive(Serialize)]
struct Notification<P: Serialize> {
    jsonrpc: &'static str,
    method: &'static str,
    params: P,
}

#[derive(Serialize)]
struct ProgressParams<'a> {
    #[serde(rename = "progressToken")]
    progress_token: &'a RawValue,
    progress: u64,
    message: String,
}

#[derive(Serialize)]
struct ElicitationCompleteParams<'a> {
    #[serde(rename = "elicitationId")]
    elicitation_id: &'a str,
}

/// The `notifications/progress` sent while a call is held (`token` echoed byte for byte).
pub fn progress_notification(
    token: &RawValue,
    progress: u64,
    pending: &[PendingToolkit],
) -> Vec<u8> {
    encode(&Notification {
        jsonrpc: "2.0",
        method: "notifications/progress",
        params: ProgressParams {
            progress_token: token,
            progress,
            message: waiting_text(pending),
        },
    })
}

/// `notifications/elicitation/complete` for an elicitation whose toolkit is now connected.
pub fn elicitation_complete(elicitation_id: &str) -> Vec<u8> {
    encode(&Notification {
        jsonrpc: "2.0",
        method: "notifications/elicitation/complete",
        params: ElicitationCompleteParams { elicitation_id },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn toolkit(slug: &str, url: Option<&str>) -> PendingToolkit {
        PendingToolkit {
            slug: slug.into(),
            name: slug.to_uppercase(),
            connect_url: url.map(str::to_owned),
            status: "waiting for authorization".into(),
        }
    }

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn ids_and_tokens_come_back_byte_for_byte() {
        let pending = [toolkit("gmail", Some("https://c/ln_1"))];
        for id in [
            r#""a\u0031""#,
            "123456789012345678901234567890",
            "1E2",
            "-0",
            "2.50",
        ] {
            for url_elicitation in [false, true] {
                let answer = blocked_answer(&raw(id), &pending, url_elicitation, None);
                let text = String::from_utf8(answer.bytes).unwrap();
                assert!(text.contains(&format!(r#""id":{id},"#)), "{text}");
            }
            let note = String::from_utf8(progress_notification(&raw(id), 1, &pending)).unwrap();
            assert!(
                note.contains(&format!(r#""progressToken":{id},"#)),
                "{note}"
            );
        }
    }

    #[test]
    fn elicitation_ids_are_unique_and_links_required() {
        let pending = [
            toolkit("gmail", Some("https://c/ln_1")),
            toolkit("github", None),
        ];
        let first = blocked_answer(&raw("1"), &pending, true, None);
        let second = blocked_answer(&raw("2"), &pending, true, None);
        assert_eq!(
            first.elicitations.len(),
            1,
            "only linked toolkits are elicited"
        );
        assert_ne!(first.elicitations[0].id, second.elicitations[0].id);
        let body: Value = serde_json::from_slice(&first.bytes).unwrap();
        assert_eq!(body["error"]["code"], URL_ELICITATION_REQUIRED);
        assert_eq!(
            body["error"]["data"]["elicitations"][0]["elicitationId"],
            first.elicitations[0].id.as_str()
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("GITHUB")
        );
        // No link at all: the text form, even for a URL-elicitation client.
        let unlinked = blocked_answer(&raw("3"), &[toolkit("github", None)], true, None);
        let body: Value = serde_json::from_slice(&unlinked.bytes).unwrap();
        assert_eq!(body["result"]["isError"], true);
        assert!(unlinked.elicitations.is_empty());
    }

    #[test]
    fn the_users_page_ends_the_blocked_text_in_both_forms() {
        let pending = [toolkit("gmail", Some("https://c/ln_1"))];
        let page = "https://gw.example/connections?u=alice&exp=9&sig=x";
        for url_elicitation in [false, true] {
            let answer =
                blocked_answer_with_page(&raw("1"), &pending, Some(page), url_elicitation, None);
            let body: Value = serde_json::from_slice(&answer.bytes).unwrap();
            let text = if url_elicitation {
                body["error"]["message"].as_str().unwrap().to_owned()
            } else {
                body["result"]["content"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            };
            assert!(text.ends_with(&format!("disconnect): {page}")), "{text}");
        }
        assert!(!blocked_text(&pending).contains("connections page"));
    }

    #[test]
    fn result_type_only_from_2026_07_28() {
        let pending = [toolkit("gmail", None)];
        let old: Value = serde_json::from_slice(
            &blocked_answer(&raw("1"), &pending, false, Some("2025-11-25")).bytes,
        )
        .unwrap();
        assert!(old["result"].get("resultType").is_none());
        let new: Value = serde_json::from_slice(
            &blocked_answer(&raw("1"), &pending, false, Some("2026-07-28")).bytes,
        )
        .unwrap();
        assert_eq!(new["result"]["resultType"], "complete");
    }
}
