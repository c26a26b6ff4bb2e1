//! The gateway's state as the operator sees it: one [`StatusView`] that the connections page,
//! `/readyz`, the startup table and `toolgate status` all render, so they never disagree.
//!
//! It is derived from the session crate's tracker snapshot (`runtime::status_view`); keeping our own
//! small view type means the pages do not depend on the tracker's internals and are easy to
//! test.

use serde::Serialize;

/// Everything the pages and status outputs show. Contains no secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct StatusView {
    /// `composio` or `generic`.
    pub(crate) mode: String,
    /// The upstream is known and requests can be forwarded.
    pub(crate) ready: bool,
    /// Why the gateway is not ready yet (while the session is being created).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) not_ready_reason: Option<String>,
    /// The Composio session id (`trs_...`), once created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) session_id: Option<String>,
    /// Composio user id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_id: Option<String>,
    /// Every required toolkit is connected: `tools/call` is forwarded.
    pub(crate) gate_open: bool,
    /// The required toolkits, in configuration order.
    pub(crate) toolkits: Vec<ToolkitView>,
    /// Several accounts per toolkit are enabled (the page offers "Add another account").
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) multi_account: bool,
    /// The last error talking to Composio, if the most recent attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_error: Option<String>,
}

/// One required toolkit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct ToolkitView {
    /// Slug, e.g. `gmail`.
    pub(crate) slug: String,
    /// Display name, e.g. `Gmail`.
    pub(crate) name: String,
    /// Logo URL from Composio's catalog.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logo: Option<String>,
    /// Connection state.
    pub(crate) status: ToolkitStatus,
    /// The connected account (`ca_...`) when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) account_id: Option<String>,
    /// The Connect Link to open, while not connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) connect_url: Option<String>,
    /// Extra human detail (a failure reason, an expiry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
    /// Whose OAuth app the links use: "your OAuth app (name)" or "Composio-managed OAuth app".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) auth_label: Option<String>,
    /// The user's accounts for this toolkit (every one with multi-account), default first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) accounts: Vec<AccountView>,
    /// A live link that adds another account (multi-account).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) add_link: Option<String>,
}

/// One connected account of a toolkit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct AccountView {
    /// Account id (`ca_...`).
    pub(crate) id: String,
    /// Composio's status (`ACTIVE`, `INACTIVE`).
    pub(crate) status: String,
    /// Its alias, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) alias: Option<String>,
    /// The account the session uses when a call names none.
    pub(crate) is_default: bool,
}

impl ToolkitView {
    /// A toolkit nothing is known about yet.
    pub(crate) fn unknown(slug: &str) -> Self {
        Self {
            slug: slug.to_owned(),
            name: slug.to_owned(),
            logo: None,
            status: ToolkitStatus::Unknown,
            account_id: None,
            connect_url: None,
            detail: None,
            auth_label: None,
            accounts: Vec::new(),
            add_link: None,
        }
    }
}

/// Connection state of one toolkit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ToolkitStatus {
    /// An ACTIVE connected account exists.
    Connected,
    /// The toolkit needs no authentication.
    NoAuth,
    /// Waiting for the user to open the Connect Link.
    Pending,
    /// The last attempt failed (denied, or no link could be made).
    Failed,
    /// The session pins an account that is not ACTIVE: remove the pin or reconnect.
    Pinned,
    /// The account is INACTIVE (disabled in Composio); no new link replaces it.
    Disabled,
    /// Not checked yet, or Composio could not be asked.
    Unknown,
}

impl ToolkitStatus {
    /// Counts as connected for the gate.
    pub(crate) fn is_connected(self) -> bool {
        matches!(self, Self::Connected | Self::NoAuth)
    }

    /// Short label for tables and pages.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Connected => "Connected",
            Self::NoAuth => "No auth needed",
            Self::Pending => "Pending",
            Self::Failed => "Failed",
            Self::Pinned => "Pinned account unusable",
            Self::Disabled => "Disabled in Composio",
            Self::Unknown => "Checking",
        }
    }
}

impl StatusView {
    /// Something may change soon without user action elsewhere: pages refresh themselves.
    pub(crate) fn is_settling(&self) -> bool {
        !self.ready
            || self
                .toolkits
                .iter()
                .any(|toolkit| !toolkit.status.is_connected())
    }

    /// The toolkit with this slug.
    pub(crate) fn toolkit(&self, slug: &str) -> Option<&ToolkitView> {
        self.toolkits.iter().find(|toolkit| toolkit.slug == slug)
    }

    /// Every required toolkit is connected.
    pub(crate) fn all_connected(&self) -> bool {
        self.toolkits
            .iter()
            .all(|toolkit| toolkit.status.is_connected())
    }

    /// A fixed-width table for terminals (stderr at startup, `toolgate status`).
    pub(crate) fn table(&self) -> String {
        let mut rows = vec![[
            "TOOLKIT".to_owned(),
            "NAME".to_owned(),
            "STATUS".to_owned(),
            "ACCOUNT".to_owned(),
            "CONNECT LINK".to_owned(),
        ]];
        for toolkit in &self.toolkits {
            let mut status = toolkit.status.label().to_owned();
            if let Some(detail) = &toolkit.detail {
                status.push_str(&format!(" ({detail})"));
            }
            rows.push([
                toolkit.slug.clone(),
                toolkit.name.clone(),
                status,
                toolkit.account_id.clone().unwrap_or_else(|| "-".to_owned()),
                toolkit
                    .connect_url
                    .clone()
                    .unwrap_or_else(|| "-".to_owned()),
            ]);
        }
        let mut widths = [0usize; 5];
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &rows {
            let line: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> StatusView {
        StatusView {
            mode: "composio".into(),
            ready: true,
            session_id: Some("trs_1".into()),
            user_id: Some("alice".into()),
            gate_open: false,
            toolkits: vec![
                ToolkitView {
                    slug: "gmail".into(),
                    name: "Gmail".into(),
                    logo: None,
                    status: ToolkitStatus::Connected,
                    account_id: Some("ca_1".into()),
                    connect_url: None,
                    detail: None,
                    ..ToolkitView::unknown("gmail")
                },
                ToolkitView {
                    slug: "github".into(),
                    name: "GitHub".into(),
                    logo: None,
                    status: ToolkitStatus::Pending,
                    account_id: None,
                    connect_url: Some("http://127.0.0.1:1/link/ln_2".into()),
                    detail: None,
                    ..ToolkitView::unknown("github")
                },
            ],
            ..StatusView::default()
        }
    }

    #[test]
    fn table_aligns_columns_and_names_links() {
        let table = sample().table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("TOOLKIT  NAME    STATUS"));
        assert!(lines[1].starts_with("gmail    Gmail   Connected  ca_1"));
        assert!(lines[2].contains("http://127.0.0.1:1/link/ln_2"));
    }

    #[test]
    fn settling_while_anything_is_pending() {
        let mut view = sample();
        assert!(view.is_settling() && !view.all_connected());
        view.toolkits[1].status = ToolkitStatus::NoAuth;
        assert!(!view.is_settling() && view.all_connected());
        view.ready = false;
        assert!(view.is_settling());
    }
}
