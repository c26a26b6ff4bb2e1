//! The multi-user pages over a real socket: signed page links, bearer callers, per-user
//! disconnect and callback, each user's page showing only that user's toolkits.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpListener;
use toolgate_proxy::identity::TokenStore;
use toolgate_proxy::identity::tokens::TokenTable;

use super::*;
use crate::status::{ToolkitStatus, ToolkitView};
use crate::web::{App, new_csrf_token, serve};

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-abcdefghijkl";

/// One user's tracker stand-in: counts hints, records disconnects.
#[derive(Default)]
struct Fake {
    hints: Mutex<u32>,
    disconnected: Mutex<Vec<String>>,
}

impl Actions for Fake {
    fn hint(&self) {
        *self.hints.lock().unwrap() += 1;
    }

    fn disconnect(
        &self,
        slug: String,
        _account: Option<String>,
    ) -> BoxFuture<'static, Result<(), String>> {
        self.disconnected.lock().unwrap().push(slug);
        Box::pin(async { Ok(()) })
    }
}

/// alice and bob, each with a connected gmail whose account and link name them.
struct FakeScopes(HashMap<String, (watch::Sender<StatusView>, Arc<Fake>)>);

impl Scopes for FakeScopes {
    fn scope<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<UserScope, String>> {
        Box::pin(async move {
            let (status, fake) = self.0.get(user.as_str()).ok_or("no such user")?;
            let actions: Arc<dyn Actions> = fake.clone();
            Ok((status.subscribe(), actions))
        })
    }
}

fn view(user: &str) -> StatusView {
    StatusView {
        mode: "composio".into(),
        ready: true,
        user_id: Some(user.into()),
        toolkits: vec![ToolkitView {
            name: "Gmail".into(),
            status: ToolkitStatus::Connected,
            account_id: Some(format!("ca_{user}")),
            ..ToolkitView::unknown("gmail")
        }],
        ..StatusView::default()
    }
}

struct Running {
    base: String,
    signer: LinkSigner,
    fakes: HashMap<String, Arc<Fake>>,
    client: reqwest::Client,
    _scopes: Arc<FakeScopes>,
}

async fn start() -> Running {
    let mut scopes = HashMap::new();
    let mut fakes = HashMap::new();
    for user in ["alice", "bob"] {
        let fake = Arc::new(Fake::default());
        fakes.insert(user.to_owned(), fake.clone());
        scopes.insert(user.to_owned(), (watch::channel(view(user)).0, fake));
    }
    let scopes = Arc::new(FakeScopes(scopes));
    let table = TokenTable::parse(&format!("alice {ALICE}\nbob {BOB}\n")).unwrap();
    let signer = LinkSigner::new(&["0123456789abcdef0123456789abcdef".into()]);
    let proxy = toolgate_proxy::config::ProxyConfig::default();
    let (_upstream_tx, upstream_rx) = watch::channel(None);
    let (_gate_tx, gate_rx) = watch::channel(toolgate_proxy::gate::GateState::Open);
    let app = Arc::new(App {
        access: toolgate_proxy::access::Access::new(&proxy),
        status: watch::channel(StatusView::default()).1,
        actions: Arc::new(Fake::default()),
        metrics: crate::metrics::Metrics::new(),
        csrf_token: new_csrf_token(),
        gateway: toolgate_proxy::gateway::Gateway::new(
            proxy,
            upstream_rx,
            gate_rx,
            Arc::new(toolgate_proxy::events::NoEvents),
        )
        .unwrap(),
        callback_wait: Duration::from_millis(50),
        multi: None,
        users: Some(UserPages {
            authenticator: Arc::new(Authenticator::Tokens(TokenStore::new(table))),
            signer: signer.clone(),
            scopes: scopes.clone(),
        }),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(
        listener,
        app,
        toolgate_proxy::limits::ServerLimits::default(),
        std::future::pending(),
        Duration::ZERO,
    ));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Running {
        base,
        signer,
        fakes,
        client,
        _scopes: scopes,
    }
}

impl Running {
    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String, http::HeaderMap) {
        let mut request = self.client.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (status, response.text().await.unwrap(), headers)
    }

    fn link(&self, purpose: Purpose, user: &str, expires: u64) -> String {
        self.signer.query(purpose, user, expires)
    }
}

#[tokio::test]
async fn a_page_link_opens_its_users_page_only() {
    let app = start().await;
    let later = unix_now() + 600;
    let (status, _, headers) = app
        .get(
            &format!("/connections?{}", app.link(Purpose::Page, "alice", later)),
            &[],
        )
        .await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/connections");
    let cookie = headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_owned();
    let (status, page, _) = app.get("/connections", &[("cookie", &pair)]).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("ca_alice") && !page.contains("ca_bob"),
        "{page}"
    );

    let bob = app.link(Purpose::Page, "bob", later);
    let (_, _, headers) = app.get(&format!("/connections?{bob}"), &[]).await;
    let pair = headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let (_, page, _) = app.get("/connections", &[("cookie", &pair)]).await;
    assert!(
        page.contains("ca_bob") && !page.contains("ca_alice"),
        "{page}"
    );

    // alice's signature under bob's name, a callback link, an expired link: refused, saying why.
    let alice = app.link(Purpose::Page, "alice", later);
    let forged = alice.replacen("u=alice", "u=bob", 1);
    let callback = app.link(Purpose::Callback, "alice", later);
    let expired = app.link(Purpose::Page, "alice", unix_now().saturating_sub(1));
    for (query, title) in [
        (forged.as_str(), "Link not valid"),
        (callback.as_str(), "Link not valid"),
        (expired.as_str(), "Link expired"),
    ] {
        let (status, page, headers) = app.get(&format!("/connections?{query}"), &[]).await;
        assert_eq!(status, 403, "{query}");
        assert!(page.contains(title), "{page}");
        assert!(headers.get("set-cookie").is_none());
        let cookie = format!("{PAGE_COOKIE}={query}");
        let (status, page, _) = app.get("/connections", &[("cookie", &cookie)]).await;
        assert_eq!(status, 403, "{query}");
        assert!(page.contains(title), "{page}");
    }
    // No link, no cookie, no token: who is asking is unknown.
    let (status, page, headers) = app.get("/connections", &[]).await;
    assert_eq!(status, 401);
    assert!(page.contains("Sign-in required"), "{page}");
    assert!(headers.contains_key("www-authenticate"));
}

#[tokio::test]
async fn bearer_callers_see_and_disconnect_only_their_own_toolkits() {
    let app = start().await;
    let alice = format!("Bearer {ALICE}");
    let bob = format!("Bearer {BOB}");
    let (status, page, _) = app.get("/connections", &[("authorization", &alice)]).await;
    assert_eq!(status, 200);
    assert!(
        page.contains("ca_alice") && !page.contains("ca_bob"),
        "{page}"
    );
    let (status, _, headers) = app
        .get(
            "/connections",
            &[("authorization", "Bearer wrong-token-0123456789")],
        )
        .await;
    assert_eq!(status, 401);
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    let (status, form, _) = app
        .get(
            "/connections/disconnect?toolkit=gmail",
            &[("authorization", &alice)],
        )
        .await;
    assert_eq!(status, 200);
    let csrf = form
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_owned();
    let post = |auth: String, csrf: String| {
        app.client
            .post(format!("{}/connections/disconnect", app.base))
            .header("authorization", auth)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("toolkit=gmail&csrf={csrf}"))
            .send()
    };
    // alice's form token does not pass for bob, nor a forged one for alice.
    assert_eq!(post(bob.clone(), csrf.clone()).await.unwrap().status(), 403);
    assert_eq!(
        post(alice.clone(), "forged".into()).await.unwrap().status(),
        403
    );
    assert!(app.fakes["bob"].disconnected.lock().unwrap().is_empty());
    assert!(app.fakes["alice"].disconnected.lock().unwrap().is_empty());
    let done = post(alice, csrf).await.unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(*app.fakes["alice"].disconnected.lock().unwrap(), ["gmail"]);
    assert!(app.fakes["bob"].disconnected.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_callback_hints_the_user_it_names_and_refuses_forgeries() {
    let app = start().await;
    let signed = app.link(Purpose::Callback, "bob", unix_now() + 600);
    let (status, _, _) = app
        .get(&format!("/callback?status=failed&{signed}"), &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(*app.fakes["bob"].hints.lock().unwrap(), 1);
    assert_eq!(*app.fakes["alice"].hints.lock().unwrap(), 0);
    let page = app.link(Purpose::Page, "alice", unix_now() + 600);
    for query in [signed.replacen("u=bob", "u=alice", 1), page, String::new()] {
        let (status, body, _) = app
            .get(&format!("/callback?status=success&{query}"), &[])
            .await;
        assert_eq!(status, 403, "{query}");
        assert!(body.contains("not valid"), "{body}");
    }
    assert_eq!(*app.fakes["alice"].hints.lock().unwrap(), 0);
}
