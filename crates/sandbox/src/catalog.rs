//! The sandbox's toolkit catalog: which toolkits exist, how each one authenticates, and the
//! auth config (`ac_...`) the project uses for it.
//!
//! The catalog is fixed and ordered (the order is the listing order). It is large enough that
//! listing all of it takes several pages at the maximum page size of 50, like the real catalog,
//! and it contains the three kinds of toolkit a client has to handle: Composio-managed OAuth2
//! (gmail, github, slack, notion, linear, ...), no-auth (`composio_search`, `hackernews`), and
//! toolkits the project has no auth config for (`shopify`, `salesforce`), for which `/link`
//! answers 404.

/// How a toolkit authenticates, and whether the sandbox's project has an auth config for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthKind {
    /// OAuth2 through a Composio-managed auth config.
    ManagedOauth2,
    /// An API key through a project-owned (not Composio-managed) auth config.
    ApiKey,
    /// No authentication at all (`is_no_auth: true`); always usable.
    NoAuth,
    /// OAuth2, but the project has not created an auth config for it.
    MissingAuthConfig,
}

/// One toolkit of the catalog.
#[derive(Debug)]
pub(crate) struct Toolkit {
    /// The slug, e.g. `gmail`.
    pub(crate) slug: &'static str,
    /// The display name, e.g. `Gmail`.
    pub(crate) name: &'static str,
    /// One-line description (searchable).
    pub(crate) description: &'static str,
    /// How it authenticates.
    pub(crate) auth: AuthKind,
}

impl Toolkit {
    /// Whether the toolkit needs no connected account.
    pub(crate) fn is_no_auth(&self) -> bool {
        self.auth == AuthKind::NoAuth
    }

    /// The auth scheme name Composio uses on the wire (`OAUTH2`, `API_KEY`, `NO_AUTH`).
    pub(crate) fn auth_scheme(&self) -> &'static str {
        match self.auth {
            AuthKind::ManagedOauth2 | AuthKind::MissingAuthConfig => "OAUTH2",
            AuthKind::ApiKey => "API_KEY",
            AuthKind::NoAuth => "NO_AUTH",
        }
    }

    /// `composio_managed_auth_schemes` of a toolkits-list item.
    pub(crate) fn composio_managed_auth_schemes(&self) -> Vec<&'static str> {
        match self.auth {
            AuthKind::ManagedOauth2 => vec!["OAUTH2"],
            _ => Vec::new(),
        }
    }

    /// Whether the project's auth config for this toolkit is Composio-managed.
    pub(crate) fn is_composio_managed(&self) -> bool {
        self.auth == AuthKind::ManagedOauth2
    }

    /// The id of the project's default auth config for this toolkit, if it has one.
    ///
    /// Derived from the slug so it is stable across restarts: tests and demos can pin it.
    pub(crate) fn default_auth_config_id(&self) -> Option<String> {
        match self.auth {
            AuthKind::ManagedOauth2 | AuthKind::ApiKey => Some(auth_config_id_for(self.slug)),
            AuthKind::NoAuth | AuthKind::MissingAuthConfig => None,
        }
    }
}

/// A stable, nanoid-looking auth config id (`ac_` + 12 characters) for a toolkit slug.
fn auth_config_id_for(slug: &str) -> String {
    stable_id("ac_", slug)
}

/// A stable, nanoid-looking id: `prefix` + 12 characters derived from `seed`.
pub(crate) fn stable_id(prefix: &str, seed: &str) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // FNV-1a: a fixed, dependency-free hash; the id only needs to be stable and distinct.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in seed.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let mut id = String::from(prefix);
    for _ in 0..12 {
        let index = usize::try_from(hash % 62).unwrap_or(0);
        id.push(char::from(ALPHABET[index]));
        hash = (hash / 62) ^ hash.rotate_left(17);
    }
    id
}

/// Looks a toolkit up by slug (slugs are lowercase; the lookup is case-insensitive like the
/// real API's).
pub(crate) fn find(slug: &str) -> Option<&'static Toolkit> {
    CATALOG
        .iter()
        .find(|toolkit| toolkit.slug.eq_ignore_ascii_case(slug))
}

/// Finds the toolkit whose default auth config has this id.
pub(crate) fn find_by_auth_config(auth_config_id: &str) -> Option<&'static Toolkit> {
    CATALOG
        .iter()
        .find(|toolkit| toolkit.default_auth_config_id().as_deref() == Some(auth_config_id))
}

/// Every toolkit, in listing order.
pub(crate) fn all() -> &'static [Toolkit] {
    CATALOG
}

macro_rules! toolkits {
    ($(($slug:literal, $name:literal, $auth:ident, $description:literal)),* $(,)?) => {
        &[$(Toolkit { slug: $slug, name: $name, auth: AuthKind::$auth, description: $description }),*]
    };
}

static CATALOG: &[Toolkit] = toolkits![
    (
        "gmail",
        "Gmail",
        ManagedOauth2,
        "Send, read and organise email in Gmail."
    ),
    (
        "github",
        "GitHub",
        ManagedOauth2,
        "Repositories, issues and pull requests on GitHub."
    ),
    (
        "slack",
        "Slack",
        ManagedOauth2,
        "Post messages and read channels in Slack."
    ),
    (
        "notion",
        "Notion",
        ManagedOauth2,
        "Pages, databases and blocks in Notion."
    ),
    (
        "linear",
        "Linear",
        ManagedOauth2,
        "Issues, projects and cycles in Linear."
    ),
    (
        "composio_search",
        "Composio Search",
        NoAuth,
        "Web, news and shopping search without an account."
    ),
    (
        "hackernews",
        "Hacker News",
        NoAuth,
        "Stories, comments and users on Hacker News."
    ),
    (
        "shopify",
        "Shopify",
        MissingAuthConfig,
        "Products, orders and customers of a Shopify store."
    ),
    (
        "salesforce",
        "Salesforce",
        MissingAuthConfig,
        "Leads, contacts and opportunities in Salesforce."
    ),
    (
        "googlecalendar",
        "Google Calendar",
        ManagedOauth2,
        "Events and calendars in Google Calendar."
    ),
    (
        "googledrive",
        "Google Drive",
        ManagedOauth2,
        "Files and folders in Google Drive."
    ),
    (
        "googlesheets",
        "Google Sheets",
        ManagedOauth2,
        "Read and write spreadsheets in Google Sheets."
    ),
    (
        "googledocs",
        "Google Docs",
        ManagedOauth2,
        "Create and edit documents in Google Docs."
    ),
    (
        "outlook",
        "Outlook",
        ManagedOauth2,
        "Mail and calendar in Microsoft Outlook."
    ),
    (
        "microsoft_teams",
        "Microsoft Teams",
        ManagedOauth2,
        "Chats, channels and meetings in Microsoft Teams."
    ),
    (
        "discord",
        "Discord",
        ManagedOauth2,
        "Servers, channels and messages on Discord."
    ),
    (
        "trello",
        "Trello",
        ManagedOauth2,
        "Boards, lists and cards in Trello."
    ),
    (
        "asana",
        "Asana",
        ManagedOauth2,
        "Tasks and projects in Asana."
    ),
    ("jira", "Jira", ManagedOauth2, "Issues and sprints in Jira."),
    (
        "confluence",
        "Confluence",
        ManagedOauth2,
        "Spaces and pages in Confluence."
    ),
    (
        "clickup",
        "ClickUp",
        ManagedOauth2,
        "Tasks, lists and docs in ClickUp."
    ),
    (
        "monday",
        "monday.com",
        ManagedOauth2,
        "Boards and items in monday.com."
    ),
    (
        "airtable",
        "Airtable",
        ManagedOauth2,
        "Bases, tables and records in Airtable."
    ),
    (
        "hubspot",
        "HubSpot",
        ManagedOauth2,
        "Contacts, companies and deals in HubSpot."
    ),
    (
        "zoom",
        "Zoom",
        ManagedOauth2,
        "Meetings and recordings in Zoom."
    ),
    (
        "dropbox",
        "Dropbox",
        ManagedOauth2,
        "Files and sharing in Dropbox."
    ),
    ("box", "Box", ManagedOauth2, "Files and folders in Box."),
    (
        "figma",
        "Figma",
        ManagedOauth2,
        "Files, comments and components in Figma."
    ),
    (
        "twitter",
        "X (Twitter)",
        ManagedOauth2,
        "Posts, timelines and users on X."
    ),
    (
        "linkedin",
        "LinkedIn",
        ManagedOauth2,
        "Profile and posts on LinkedIn."
    ),
    (
        "reddit",
        "Reddit",
        ManagedOauth2,
        "Posts, comments and subreddits on Reddit."
    ),
    (
        "youtube",
        "YouTube",
        ManagedOauth2,
        "Videos, playlists and channels on YouTube."
    ),
    (
        "spotify",
        "Spotify",
        ManagedOauth2,
        "Playlists and playback on Spotify."
    ),
    (
        "stripe",
        "Stripe",
        ManagedOauth2,
        "Customers, payments and invoices in Stripe."
    ),
    (
        "calendly",
        "Calendly",
        ManagedOauth2,
        "Scheduling links and events in Calendly."
    ),
    (
        "todoist",
        "Todoist",
        ManagedOauth2,
        "Tasks and projects in Todoist."
    ),
    (
        "intercom",
        "Intercom",
        ManagedOauth2,
        "Conversations and contacts in Intercom."
    ),
    (
        "zendesk",
        "Zendesk",
        ManagedOauth2,
        "Tickets and users in Zendesk."
    ),
    (
        "freshdesk",
        "Freshdesk",
        ApiKey,
        "Tickets and contacts in Freshdesk."
    ),
    (
        "mailchimp",
        "Mailchimp",
        ManagedOauth2,
        "Audiences and campaigns in Mailchimp."
    ),
    (
        "sendgrid",
        "SendGrid",
        ApiKey,
        "Transactional email through SendGrid."
    ),
    ("twilio", "Twilio", ApiKey, "SMS and voice through Twilio."),
    (
        "bitbucket",
        "Bitbucket",
        ManagedOauth2,
        "Repositories and pull requests on Bitbucket."
    ),
    (
        "gitlab",
        "GitLab",
        ManagedOauth2,
        "Projects, issues and merge requests on GitLab."
    ),
    (
        "sentry",
        "Sentry",
        ManagedOauth2,
        "Issues and events in Sentry."
    ),
    (
        "datadog",
        "Datadog",
        ApiKey,
        "Metrics, monitors and logs in Datadog."
    ),
    (
        "pagerduty",
        "PagerDuty",
        ManagedOauth2,
        "Incidents and on-call schedules in PagerDuty."
    ),
    (
        "supabase",
        "Supabase",
        ManagedOauth2,
        "Projects and databases in Supabase."
    ),
    (
        "vercel",
        "Vercel",
        ManagedOauth2,
        "Deployments and projects on Vercel."
    ),
    (
        "netlify",
        "Netlify",
        ManagedOauth2,
        "Sites and deploys on Netlify."
    ),
    (
        "cloudflare",
        "Cloudflare",
        ApiKey,
        "DNS, zones and workers on Cloudflare."
    ),
    (
        "perplexityai",
        "Perplexity AI",
        ApiKey,
        "Answer questions with Perplexity."
    ),
    ("exa", "Exa", ApiKey, "Neural web search with Exa."),
    (
        "tavily",
        "Tavily",
        ApiKey,
        "Search the web for agents with Tavily."
    ),
    (
        "firecrawl",
        "Firecrawl",
        ApiKey,
        "Crawl and scrape websites with Firecrawl."
    ),
    (
        "serpapi",
        "SerpApi",
        ApiKey,
        "Search engine results through SerpApi."
    ),
    ("coda", "Coda", ApiKey, "Docs and tables in Coda."),
    (
        "miro",
        "Miro",
        ManagedOauth2,
        "Boards and sticky notes in Miro."
    ),
    (
        "canva",
        "Canva",
        ManagedOauth2,
        "Designs and assets in Canva."
    ),
    (
        "docusign",
        "DocuSign",
        ManagedOauth2,
        "Envelopes and signatures in DocuSign."
    ),
    (
        "quickbooks",
        "QuickBooks",
        ManagedOauth2,
        "Invoices and accounts in QuickBooks."
    ),
    (
        "xero",
        "Xero",
        ManagedOauth2,
        "Invoices and contacts in Xero."
    ),
    (
        "attio",
        "Attio",
        ManagedOauth2,
        "Records and lists in Attio."
    ),
    (
        "pipedrive",
        "Pipedrive",
        ManagedOauth2,
        "Deals and pipelines in Pipedrive."
    ),
    (
        "typeform",
        "Typeform",
        ManagedOauth2,
        "Forms and responses in Typeform."
    ),
    (
        "webflow",
        "Webflow",
        ManagedOauth2,
        "Sites and CMS collections in Webflow."
    ),
    (
        "wrike",
        "Wrike",
        ManagedOauth2,
        "Tasks and folders in Wrike."
    ),
    (
        "smartsheet",
        "Smartsheet",
        ManagedOauth2,
        "Sheets and rows in Smartsheet."
    ),
    (
        "basecamp",
        "Basecamp",
        ManagedOauth2,
        "Projects and to-dos in Basecamp."
    ),
    (
        "weathermap",
        "OpenWeatherMap",
        NoAuth,
        "Current weather and forecasts."
    ),
    (
        "codeinterpreter",
        "Code Interpreter",
        NoAuth,
        "Run short Python snippets in a scratch environment."
    ),
];

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn slugs_and_auth_config_ids_are_unique_and_well_formed() {
        let slugs: HashSet<_> = all().iter().map(|toolkit| toolkit.slug).collect();
        assert_eq!(slugs.len(), all().len());
        let ids: Vec<String> = all()
            .iter()
            .filter_map(Toolkit::default_auth_config_id)
            .collect();
        let unique: HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            assert!(id.starts_with("ac_") && id.len() == 15, "{id}");
            assert_eq!(
                find_by_auth_config(id)
                    .and_then(Toolkit::default_auth_config_id)
                    .as_deref(),
                Some(id.as_str())
            );
        }
    }

    #[test]
    fn catalog_needs_several_pages_at_the_maximum_page_size() {
        assert!(all().len() > 50, "{} toolkits", all().len());
        assert!(find("GMAIL").is_some_and(|toolkit| toolkit.slug == "gmail"));
        assert!(find("nope").is_none());
    }
}
