//! Server-rendered HTML for `/connections`, the disconnect confirmation and `/callback`.
//!
//! No JavaScript: buttons are links and forms, and a page that is waiting on something refreshes
//! itself with `<meta http-equiv="refresh">`. Every value that came from outside (toolkit names,
//! URLs, query parameters) goes through [`escape`], and URLs are only used as `href`/`src` when
//! they are plain `http(s)` URLs, so a hostile catalog entry cannot inject markup or script.

use std::fmt::Write as _;

use crate::status::{StatusView, ToolkitStatus, ToolkitView};

/// Seconds between self-refreshes while something is pending.
pub(crate) const REFRESH_SECONDS: u32 = 3;

/// HTML-escapes text for element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// `Some(url)` only for absolute http(s) URLs: anything else (`javascript:`, `data:`) is
/// dropped rather than put in an attribute.
fn safe_url(url: Option<&str>) -> Option<&str> {
    let url = url?;
    let parsed = url::Url::parse(url).ok()?;
    matches!(parsed.scheme(), "http" | "https").then_some(url)
}

fn percent_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2330}\
main{max-width:760px;margin:40px auto;padding:0 20px}\
h1{font-size:1.6rem;margin:0 0 4px}\
p.sub{color:#5b6474;margin:0 0 24px}\
.card{background:#fff;border:1px solid #dfe3ea;border-radius:10px;padding:16px 20px;margin:0 0 12px;display:flex;align-items:center;gap:16px}\
.logo{position:relative;flex:none;width:40px;height:40px;border-radius:8px;background:#e4e8f0;display:flex;align-items:center;justify-content:center;font-weight:700}\
.logo img{position:absolute;inset:0;width:40px;height:40px;border-radius:8px;background:#fff}\
ul.pending{margin:0 0 16px;padding-left:20px}\
.info{flex:1}\
.name{font-weight:600;font-size:1.05rem}\
.detail{color:#5b6474;font-size:.9rem}\
.badge{display:inline-block;padding:2px 10px;border-radius:999px;font-size:.85rem;font-weight:600}\
.connected{background:#dcf5e3;color:#17663a}\
.pending{background:#fff3cd;color:#7a5a00}\
.failed{background:#fde2e1;color:#a12a22}\
.unknown{background:#e4e8f0;color:#3d4657}\
a.button,button{display:inline-block;border:0;border-radius:8px;padding:8px 16px;font-size:.95rem;font-weight:600;cursor:pointer;text-decoration:none}\
a.primary,button.primary{background:#3259d6;color:#fff}\
button.danger,a.danger{background:#fff;color:#a12a22;border:1px solid #e5b4b0}\
a.plain{background:#fff;color:#3259d6;border:1px solid #c9d3ee}\
form{margin:0}\
.banner{padding:12px 16px;border-radius:8px;margin:0 0 16px}\
.ok{background:#dcf5e3}.warn{background:#fff3cd}.err{background:#fde2e1}\
footer{color:#8a93a3;font-size:.8rem;margin-top:24px}";

fn page(title: &str, refresh: bool, body: &str) -> String {
    let refresh = if refresh {
        format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">")
    } else {
        String::new()
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">{refresh}\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body><main>{body}</main></body></html>\n",
        title = escape(title),
    )
}

fn badge(status: ToolkitStatus) -> String {
    let class = match status {
        ToolkitStatus::Connected | ToolkitStatus::NoAuth => "connected",
        ToolkitStatus::Pending => "pending",
        ToolkitStatus::Failed | ToolkitStatus::Pinned | ToolkitStatus::Disabled => "failed",
        ToolkitStatus::Unknown => "unknown",
    };
    format!(
        "<span class=\"badge {class}\" data-status=\"{}\">{}</span>",
        status_key(status),
        status.label()
    )
}

fn status_key(status: ToolkitStatus) -> &'static str {
    match status {
        ToolkitStatus::Connected => "connected",
        ToolkitStatus::NoAuth => "no_auth",
        ToolkitStatus::Pending => "pending",
        ToolkitStatus::Failed => "failed",
        ToolkitStatus::Pinned => "pinned",
        ToolkitStatus::Disabled => "disabled",
        ToolkitStatus::Unknown => "unknown",
    }
}

/// The accounts of a toolkit with several (multi-account): each with its own Disconnect, and
/// "Add another account". Empty for a toolkit with at most one account and no add link.
fn accounts_list(toolkit: &ToolkitView, multi_account: bool) -> String {
    if !multi_account && toolkit.accounts.len() < 2 {
        return String::new();
    }
    let slug = escape(&percent_encode(&toolkit.slug));
    let mut list = String::from("<ul class=\"accounts\">");
    for account in &toolkit.accounts {
        let _ = write!(
            list,
            "<li id=\"account-{id}\">{id}{alias}{default} · {status} \
             <a class=\"button danger\" href=\"/connections/disconnect?toolkit={slug}&amp;account={id_q}\">Disconnect</a></li>",
            id = escape(&account.id),
            id_q = escape(&percent_encode(&account.id)),
            alias = account
                .alias
                .as_deref()
                .map(|alias| format!(" ({})", escape(alias)))
                .unwrap_or_default(),
            default = if account.is_default {
                " · default"
            } else {
                ""
            },
            status = escape(&account.status),
        );
    }
    if multi_account {
        let _ = write!(
            list,
            "<li><a class=\"button plain\" id=\"add-{}\" href=\"/connections/add?toolkit={slug}\">Add another account</a></li>",
            escape(&toolkit.slug)
        );
    }
    list.push_str("</ul>");
    list
}

fn toolkit_card(toolkit: &ToolkitView, multi_account: bool) -> String {
    // The letter is always there, under the image: a logo that fails to load (offline,
    // blocked) leaves the letter visible instead of a broken-image icon (no script needed).
    let initial = escape(&toolkit.name.chars().next().unwrap_or('?').to_string());
    let image = safe_url(toolkit.logo.as_deref())
        .map(|url| format!("<img src=\"{}\" alt=\"\">", escape(url)))
        .unwrap_or_default();
    let logo = format!("<div class=\"logo\" aria-hidden=\"true\">{initial}{image}</div>");
    let mut detail = String::new();
    if let Some(account) = &toolkit.account_id {
        let _ = write!(detail, "account {}", escape(account));
    }
    for extra in [&toolkit.detail, &toolkit.auth_label].into_iter().flatten() {
        if !detail.is_empty() {
            detail.push_str(" · ");
        }
        detail.push_str(&escape(extra));
    }
    let action = match toolkit.status {
        ToolkitStatus::Connected if toolkit.account_id.is_some() => format!(
            "<a class=\"button danger\" href=\"/connections/disconnect?toolkit={}\">Disconnect</a>",
            escape(&percent_encode(&toolkit.slug))
        ),
        ToolkitStatus::Connected
        | ToolkitStatus::NoAuth
        | ToolkitStatus::Pinned
        | ToolkitStatus::Disabled => String::new(),
        ToolkitStatus::Pending | ToolkitStatus::Failed | ToolkitStatus::Unknown => {
            match safe_url(toolkit.connect_url.as_deref()) {
                Some(url) => format!(
                    "<a class=\"button primary\" id=\"connect-{slug}\" href=\"{url}\">Connect</a>",
                    slug = escape(&toolkit.slug),
                    url = escape(url)
                ),
                None => "<span class=\"detail\">preparing a Connect Link…</span>".to_owned(),
            }
        }
    };
    format!(
        "<div class=\"card\" id=\"toolkit-{slug}\">{logo}<div class=\"info\">\
         <div class=\"name\">{name} {badge}</div><div class=\"detail\">{slug}{sep}{detail}</div>\
         {accounts}</div>{action}</div>",
        accounts = accounts_list(toolkit, multi_account),
        slug = escape(&toolkit.slug),
        name = escape(&toolkit.name),
        badge = badge(toolkit.status),
        sep = if detail.is_empty() { "" } else { " · " },
    )
}

/// `/connections`: every required toolkit, its status and the action that fits.
pub(crate) fn connections(view: &StatusView, notice: Option<&str>) -> String {
    let mut body = String::from("<h1>toolgate connections</h1>");
    let _ = write!(
        body,
        "<p class=\"sub\">Connect the accounts this gateway needs{}. Tool calls are blocked until every toolkit below is connected.</p>",
        view.user_id
            .as_deref()
            .map(|user| format!(" for user <b>{}</b>", escape(user)))
            .unwrap_or_default()
    );
    if let Some(notice) = notice {
        let _ = write!(body, "<div class=\"banner ok\">{}</div>", escape(notice));
    }
    if !view.ready {
        let _ = write!(
            body,
            "<div class=\"banner warn\" id=\"not-ready\">Starting: {}</div>",
            escape(
                view.not_ready_reason
                    .as_deref()
                    .unwrap_or("creating the Composio session")
            )
        );
    } else if view.gate_open {
        body.push_str(
            "<div class=\"banner ok\" id=\"gate\" data-gate=\"open\">All set: every required toolkit is connected and tool calls pass.</div>",
        );
    } else {
        body.push_str(
            "<div class=\"banner warn\" id=\"gate\" data-gate=\"closed\">Waiting: tool calls are blocked until the toolkits below are connected. This page refreshes itself.</div>",
        );
    }
    if let Some(error) = &view.last_error {
        let _ = write!(
            body,
            "<div class=\"banner err\">Last Composio error: {}</div>",
            escape(error)
        );
    }
    if view.toolkits.is_empty() && view.ready {
        body.push_str("<p>No toolkits are required by this gateway's configuration.</p>");
    }
    for toolkit in &view.toolkits {
        body.push_str(&toolkit_card(toolkit, view.multi_account));
    }
    if let Some(session) = &view.session_id {
        let _ = write!(body, "<footer>Session {}</footer>", escape(session));
    }
    page("toolgate connections", view.is_settling(), &body)
}

/// The confirmation step before disconnecting: a POST form carrying the CSRF token.
pub(crate) fn confirm_disconnect(
    toolkit: &ToolkitView,
    account: Option<&str>,
    csrf_token: &str,
) -> String {
    let body = format!(
        "<h1>Disconnect {name}?</h1>\
         <p class=\"sub\">This deletes the connected account {account} at Composio. Tool calls \
         will be blocked again until {name} is reconnected.</p>\
         <div class=\"card\"><form method=\"post\" action=\"/connections/disconnect\">\
         <input type=\"hidden\" name=\"toolkit\" value=\"{slug}\">{account_field}\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <button class=\"danger\" type=\"submit\" id=\"confirm-disconnect\">Yes, disconnect {name}</button>\
         </form><a class=\"button plain\" href=\"/connections\">Cancel</a></div>",
        name = escape(&toolkit.name),
        slug = escape(&toolkit.slug),
        account = escape(account.or(toolkit.account_id.as_deref()).unwrap_or("-")),
        account_field = account
            .map(|id| format!(
                "<input type=\"hidden\" name=\"account\" value=\"{}\">",
                escape(id)
            ))
            .unwrap_or_default(),
        csrf = escape(csrf_token),
    );
    page("Disconnect", false, &body)
}

/// What `/callback` tells the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CallbackOutcome {
    /// Composio reported success and toolgate confirmed the account is active.
    Connected {
        /// Display name of the toolkit.
        name: String,
    },
    /// Composio reported success but toolgate could not confirm it (yet).
    Unconfirmed,
    /// Composio reported a failure (or the user denied access).
    Failed {
        /// The toolkit's name when the account is known.
        name: Option<String>,
    },
}

/// `/callback`: where Composio sends the browser after a Connect Link. `view` is the gate's
/// current state, so the page can say what is still to connect.
pub(crate) fn callback(outcome: &CallbackOutcome, view: &StatusView) -> String {
    // The toolkit just confirmed may not have reached `view` yet; a failed one stays listed.
    let just_named = match outcome {
        CallbackOutcome::Connected { name } => Some(name.as_str()),
        CallbackOutcome::Failed { .. } | CallbackOutcome::Unconfirmed => None,
    };
    let pending: Vec<&ToolkitView> = view
        .toolkits
        .iter()
        .filter(|toolkit| !toolkit.status.is_connected())
        .filter(|toolkit| Some(toolkit.name.as_str()) != just_named)
        .collect();
    let (title, banner, class) = match outcome {
        CallbackOutcome::Connected { name } if pending.is_empty() => (
            "Connected",
            format!(
                "{} is connected. Every required toolkit is connected now: tool calls pass. \
                 You can close this tab or go back to your assistant.",
                escape(name)
            ),
            "ok",
        ),
        CallbackOutcome::Connected { name } => (
            "Connected",
            format!("{} is connected.", escape(name)),
            "ok",
        ),
        CallbackOutcome::Unconfirmed => (
            "Checking",
            "Composio reported success; toolgate is still confirming the connection with Composio. \
             The connections page shows the confirmed state."
                .to_owned(),
            "warn",
        ),
        CallbackOutcome::Failed { name } => (
            "Not connected",
            format!(
                "{} was not connected (access was denied, or the link failed or expired). Open the \
                 connections page to get a fresh link and try again.",
                escape(name.as_deref().unwrap_or("The toolkit"))
            ),
            "err",
        ),
    };
    let mut body = format!(
        "<h1 id=\"callback-title\">{title}</h1><div class=\"banner {class}\" id=\"callback\">{banner}</div>"
    );
    if !pending.is_empty() {
        body.push_str(
            "<p id=\"still-pending\">Still to connect (tool calls stay blocked until these are connected):</p><ul class=\"pending\">",
        );
        for toolkit in &pending {
            let _ = write!(
                body,
                "<li data-toolkit=\"{}\">{}</li>",
                escape(&toolkit.slug),
                escape(&toolkit.name)
            );
        }
        body.push_str("</ul>");
    }
    let back = if pending.is_empty() {
        "Back to connections"
    } else {
        "Connect the others"
    };
    let _ = write!(
        body,
        "<p><a class=\"button primary\" id=\"back\" href=\"/connections\">{back}</a></p>"
    );
    page(&format!("toolgate: {title}"), false, &body)
}

/// A small error page (bad request, unknown toolkit, forbidden).
pub(crate) fn error(title: &str, message: &str) -> String {
    let body = format!(
        "<h1>{}</h1><div class=\"banner err\">{}</div>\
         <p><a class=\"button plain\" href=\"/connections\">Back to connections</a></p>",
        escape(title),
        escape(message)
    );
    page(title, false, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> StatusView {
        StatusView {
            mode: "composio".into(),
            ready: true,
            user_id: Some("alice<script>".into()),
            toolkits: vec![
                ToolkitView {
                    slug: "gmail".into(),
                    name: "Gmail".into(),
                    logo: Some("https://logos.example/gmail.svg".into()),
                    status: ToolkitStatus::Connected,
                    account_id: Some("ca_1".into()),
                    connect_url: None,
                    detail: None,
                    ..ToolkitView::unknown("")
                },
                ToolkitView {
                    slug: "evil".into(),
                    name: "<img src=x onerror=alert(1)>".into(),
                    logo: Some("javascript:alert(1)".into()),
                    status: ToolkitStatus::Pending,
                    account_id: None,
                    connect_url: Some("https://connect.example/link/ln_1?a=1&b=\"2\"".into()),
                    detail: Some("expires <soon>".into()),
                    ..ToolkitView::unknown("")
                },
            ],
            ..StatusView::default()
        }
    }

    #[test]
    fn escapes_everything_from_outside() {
        let html = connections(&view(), None);
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(
            html.contains("href=\"https://connect.example/link/ln_1?a=1&amp;b=&quot;2&quot;\"")
        );
        assert!(html.contains("expires &lt;soon&gt;"));
    }

    #[test]
    fn refreshes_only_while_settling() {
        let html = connections(&view(), None);
        assert!(html.contains("http-equiv=\"refresh\""));
        let mut settled = view();
        settled.toolkits.truncate(1);
        settled.gate_open = true;
        let html = connections(&settled, None);
        assert!(!html.contains("http-equiv=\"refresh\""));
        assert!(html.contains("data-gate=\"open\""));
        assert!(html.contains("/connections/disconnect?toolkit=gmail"));
        assert!(html.contains("<img src=\"https://logos.example/gmail.svg\""));
    }

    #[test]
    fn confirm_page_posts_with_csrf_token() {
        let html = confirm_disconnect(&view().toolkits[0], None, "tok\"en");
        assert!(html.contains("method=\"post\" action=\"/connections/disconnect\""));
        assert!(html.contains("name=\"csrf\" value=\"tok&quot;en\""));
        assert!(html.contains("name=\"toolkit\" value=\"gmail\""));
    }

    #[test]
    fn callback_pages_link_back() {
        for outcome in [
            CallbackOutcome::Connected {
                name: "Gmail".into(),
            },
            CallbackOutcome::Unconfirmed,
            CallbackOutcome::Failed { name: None },
        ] {
            let html = callback(&outcome, &view());
            assert!(html.contains("href=\"/connections\""), "{html}");
        }
    }

    #[test]
    fn callback_page_names_what_is_still_pending() {
        let mut both = view();
        both.toolkits[1].name = "GitHub".into();
        let gmail = CallbackOutcome::Connected {
            name: "Gmail".into(),
        };
        let html = callback(&gmail, &both);
        assert!(html.contains("Gmail is connected."), "{html}");
        assert!(html.contains("id=\"still-pending\""), "{html}");
        assert!(
            html.contains("<li data-toolkit=\"evil\">GitHub</li>"),
            "{html}"
        );
        assert!(
            !html.contains("close this tab"),
            "GitHub is still pending: {html}"
        );
        both.toolkits.truncate(1);
        let html = callback(&gmail, &both);
        assert!(html.contains("close this tab"), "{html}");
        assert!(!html.contains("still-pending"), "{html}");
    }

    #[test]
    fn logo_image_lies_over_its_letter() {
        let html = connections(&view(), None);
        assert!(
            html.contains("<div class=\"logo\" aria-hidden=\"true\">G<img src=\"https://logos.example/gmail.svg\" alt=\"\"></div>"),
            "{html}"
        );
        // A hostile logo URL is dropped; the letter stays.
        assert!(
            html.contains("<div class=\"logo\" aria-hidden=\"true\">&lt;</div>"),
            "{html}"
        );
    }
}
