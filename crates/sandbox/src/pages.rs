//! HTML and SVG the sandbox serves to browsers: the hosted Connect Link page (`/link/ln_...`),
//! the page shown after answering a link without a callback URL, and toolkit logos. Plain HTML
//! forms, no JavaScript, no external assets, so everything works offline.

use crate::http::escape_html;
use crate::store::{LinkPage, Status};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1d1d1f}\
main{border:1px solid #ddd;border-radius:12px;padding:2rem}\
h1{font-size:1.3rem;display:flex;align-items:center;gap:.75rem}\
form{display:inline}button{font-size:1rem;padding:.6rem 1.4rem;margin-right:.5rem;border-radius:8px;border:1px solid #888;cursor:pointer}\
button.allow{background:#1b6ef3;color:#fff;border-color:#1b6ef3}\
.muted{color:#666;font-size:.9rem}code{background:#f3f3f3;padding:0 .25rem;border-radius:4px}";

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main>\
         <p class=\"muted\">Served by the toolgate sandbox, a local stand-in for Composio. No real account is involved.</p></body></html>\n",
        escape_html(title)
    )
}

/// The Connect Link page: names the toolkit and the user, with Allow and Deny buttons that post
/// to the control plane. A link that is no longer pending shows its status instead.
pub(crate) fn link_page(page: &LinkPage, base_url: &str) -> String {
    let toolkit = escape_html(page.toolkit_name);
    let user = escape_html(&page.user_id);
    let logo = format!(
        "<img src=\"{}/_sandbox/logos/{}.svg\" alt=\"\" width=\"40\" height=\"40\">",
        escape_html(base_url),
        escape_html(page.toolkit_slug)
    );
    let heading = format!("<h1>{logo}<span>Connect {toolkit}</span></h1>");
    if !matches!(page.status, Status::Initializing | Status::Initiated) {
        let reason = page
            .status_reason
            .as_deref()
            .map(|reason| format!("<p>{}</p>", escape_html(reason)))
            .unwrap_or_default();
        // A dead end otherwise: the application behind the callback can mint a fresh link.
        let back = page
            .return_url
            .as_deref()
            .map(|url| {
                format!(
                    "<p><a class=\"back\" href=\"{}\">Back to the application</a> to get a new link.</p>",
                    escape_html(url)
                )
            })
            .unwrap_or_default();
        return document(
            &format!("Connect {}", page.toolkit_name),
            &format!(
                "{heading}<p>This link for user <strong>{user}</strong> is no longer pending: the connection is <code>{}</code>.</p>{reason}{back}",
                page.status.as_str()
            ),
        );
    }
    let action = |verb: &str| {
        format!(
            "{}/_sandbox/links/{}/{verb}",
            escape_html(base_url),
            escape_html(&page.token)
        )
    };
    document(
        &format!("Connect {}", page.toolkit_name),
        &format!(
            "{heading}<p>{app} wants to use <strong>{toolkit}</strong> on behalf of user <strong>{user}</strong>.</p>\
             <p class=\"muted\">Connected account <code>{account}</code></p>\
             <form method=\"post\" action=\"{allow}\"><button class=\"allow\" type=\"submit\">Allow</button></form>\
             <form method=\"post\" action=\"{deny}\"><button type=\"submit\">Deny</button></form>",
            account = escape_html(&page.account_id),
            app = match &page.app_name {
                Some(name) => format!("<strong class=\"app\">{}</strong>", escape_html(name)),
                None => "An application (through Composio's own OAuth app)".to_owned(),
            },
            allow = action("allow"),
            deny = action("deny"),
        ),
    )
}

/// Shown after Allow/Deny when the link has no callback URL.
pub(crate) fn finished_page(toolkit_name: &str, allowed: bool) -> String {
    let outcome = if allowed {
        "is now connected"
    } else {
        "was not connected: access was denied"
    };
    document(
        &format!("{toolkit_name} connection"),
        &format!(
            "<h1>{} {outcome}</h1><p>You can close this tab.</p>",
            escape_html(toolkit_name)
        ),
    )
}

/// Shown for an unknown link token.
pub(crate) fn unknown_link_page() -> String {
    document(
        "Link not found",
        "<h1>Link not found</h1><p>This Connect Link does not exist. Ask the application for a new one.</p>",
    )
}

/// A round logo with the toolkit's initial, coloured from its slug.
pub(crate) fn logo_svg(slug: &str, name: &str) -> String {
    let hue = slug.bytes().fold(0u32, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(u32::from(byte))
    }) % 360;
    let initial = name
        .chars()
        .next()
        .map(|initial| escape_html(&initial.to_uppercase().to_string()))
        .unwrap_or_default();
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"64\" height=\"64\" viewBox=\"0 0 64 64\">\
         <circle cx=\"32\" cy=\"32\" r=\"32\" fill=\"hsl({hue},65%,45%)\"/>\
         <text x=\"32\" y=\"42\" font-family=\"sans-serif\" font-size=\"30\" text-anchor=\"middle\" fill=\"#fff\">{initial}</text></svg>"
    )
}
