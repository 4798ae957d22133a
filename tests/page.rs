//! The invoice page (`GET /invoice/{id}`) in a real headless Chromium,
//! driven over WebDriver (chromedriver, started here on a free port): the
//! page updates live without a reload, renders a hostile memo as text, and
//! recovers from a server restart, showing a payment made while the server
//! was down. Also the page's headers, errors and invoice addresses over
//! plain HTTP.
//!
//! Needs Debian's `chromium` and `chromium-driver` packages; without them the
//! browser tests fail and say how to install them.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{ADDRESS, TestApp, txid};
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The Chromium binary Debian's `chromium` package installs.
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the page may take to show an expected state.
const PAGE_WAIT: Duration = Duration::from_secs(30);
const API_TOKEN: &str = "page-test-token-0123456789";
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// ---------------------------------------------------------------- browser --

/// A chromedriver child process and a Chromium session it drives.
struct Browser {
    client: Option<Client>,
    _driver: Child,
    profile: PathBuf,
}

fn missing_browser(what: &str) -> ! {
    panic!(
        "tests/page.rs needs a headless Chromium and chromedriver, and {what}. \
         Install them with `apt-get install chromium chromium-driver` (Debian), \
         or run `bash .ci/run`, which does."
    );
}

impl Browser {
    async fn start() -> Browser {
        if !Path::new(CHROMIUM).exists() {
            missing_browser(&format!("{CHROMIUM} does not exist"));
        }
        let port = free_port();
        let mut driver = match Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(error) => missing_browser(&format!("`chromedriver` could not be run ({error})")),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Ok(Some(status)) = driver.try_wait() {
                panic!("chromedriver exited at start-up with {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not listen on port {port} within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let profile = std::env::temp_dir().join(format!("paywatch-chromium-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&profile).expect("create the Chromium profile directory");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|error| {
                panic!("chromedriver could not start Chromium ({CHROMIUM}): {error}")
            });
        // A phone-sized window: the page is meant to read well on one.
        client
            .set_window_size(420, 1200)
            .await
            .expect("set window size");
        Browser {
            client: Some(client),
            _driver: driver,
            profile,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("browser session open")
    }

    /// Ends the session (which closes Chromium) and removes its profile.
    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Runs `test` with a fresh browser and closes the browser even if the test
/// fails, so no Chromium outlives it.
async fn with_browser<F>(test: impl FnOnce(Client) -> F)
where
    F: std::future::Future<Output = ()>,
{
    let browser = Browser::start().await;
    let outcome = std::panic::AssertUnwindSafe(test(browser.client().clone()))
        .catch_unwind()
        .await;
    browser.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// What the page shows, read from the DOM.
#[derive(Debug)]
struct Shown {
    status: String,
    paid: String,
    badge: String,
    event_ids: Vec<i64>,
}

async fn shown(client: &Client) -> Shown {
    let text = |selector: &'static str| async move {
        match client.find(Locator::Css(selector)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    };
    let mut event_ids = Vec::new();
    for item in client
        .find_all(Locator::Css("#payments > li"))
        .await
        .unwrap_or_default()
    {
        if let Ok(Some(id)) = item.attr("data-event-id").await {
            event_ids.push(id.parse().expect("numeric data-event-id"));
        }
    }
    Shown {
        status: text("#status").await,
        paid: text("#paid").await,
        badge: text("#connection").await,
        event_ids,
    }
}

/// Polls the page until `condition` holds; fails with what it last showed.
async fn wait_until(client: &Client, what: &str, condition: impl Fn(&Shown) -> bool) -> Shown {
    let deadline = tokio::time::Instant::now() + PAGE_WAIT;
    loop {
        let now = shown(client).await;
        if condition(&now) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page did not show {what} within {PAGE_WAIT:?}; it shows {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&folder).expect("create target/screenshots");
    std::fs::write(folder.join(name), png).expect("write screenshot");
}

// ------------------------------------------------------------------ data --

async fn invoice_with(app: &TestApp, amount_sats: i64, memo: &str, address: Option<&str>) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO invoices (amount_sats, memo, address) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(amount_sats)
    .bind(memo)
    .bind(address)
    .fetch_one(&app.pool)
    .await
    .expect("insert invoice")
}

async fn pay(app: &TestApp, invoice: Uuid, amount_sats: i64, memo: &str) -> i64 {
    sqlx::query_scalar(
        "INSERT INTO payments (invoice_id, txid, amount_sats, memo) VALUES ($1, $2, $3, $4) \
         RETURNING id",
    )
    .bind(invoice)
    .bind(txid())
    .bind(amount_sats)
    .bind(memo)
    .fetch_one(&app.pool)
    .await
    .expect("insert payment")
}

fn page_url(address: SocketAddr, invoice: Uuid) -> String {
    format!("http://{address}/invoice/{}", invoice.simple())
}

// ----------------------------------------------------------------- tests --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_shows_a_payment_inserted_over_sql_without_a_reload() {
    let app = TestApp::spawn().await;
    let invoice = invoice_with(&app, 100_000, "Order #1042 · 2 coffees", Some(ADDRESS)).await;
    let url = page_url(app.address, invoice);
    with_browser(|client| async move {
        client.goto(&url).await.expect("open the page");
        let root = client
            .find(Locator::Css("#invoice"))
            .await
            .expect("page root");
        let start = wait_until(&client, "the live badge", |s| s.badge == "live").await;
        assert_eq!(start.status, "Awaiting payment");
        assert_eq!(start.paid, "0 BCH");
        assert!(start.event_ids.is_empty());
        assert!(
            client.find(Locator::Css(".qr svg.qr-code")).await.is_ok(),
            "the QR code is on the page"
        );

        let first = pay(&app, invoice, 40_000, "").await;
        let now = wait_until(&client, "the first payment", |s| {
            s.event_ids == [first] && s.status == "Partially paid"
        })
        .await;
        assert_eq!(now.paid, "0.0004 BCH");

        let second = pay(&app, invoice, 60_000, "thanks!").await;
        let now = wait_until(&client, "the second payment", |s| {
            s.event_ids == [first, second] && s.status == "Paid"
        })
        .await;
        assert_eq!(now.paid, "0.001 BCH");
        let item = client
            .find(Locator::Css(&format!("li[data-event-id=\"{second}\"]")))
            .await
            .expect("the payment's list item");
        let item_text = item.text().await.unwrap();
        assert!(item_text.contains("0.0006 BCH"), "{item_text}");
        assert!(item_text.contains("thanks!"), "{item_text}");
        assert!(item_text.contains(" UTC"), "time shown: {item_text}");

        // The element found before the payments is still attached: the page
        // changed in place and was not reloaded.
        assert_eq!(
            root.attr("data-status").await.expect("not reloaded"),
            Some("paid".to_owned())
        );
        // Let the arrival highlight fade before the picture.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        screenshot(&client, "invoice-page.png").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_memo_renders_as_text_live_and_server_side() {
    let app = TestApp::spawn().await;
    let evil = "<img src=x onerror=alert(1)>";
    let invoice = invoice_with(&app, 1_000, evil, None).await;
    let url = page_url(app.address, invoice);
    with_browser(|client| async move {
        client.goto(&url).await.expect("open the page");
        wait_until(&client, "the live badge", |s| s.badge == "live").await;
        let title = client.find(Locator::Css("#memo")).await.unwrap();
        assert_eq!(title.text().await.unwrap(), evil, "invoice memo as text");

        // Inserted live, by page.js.
        let id = pay(&app, invoice, 500, evil).await;
        wait_until(&client, "the payment", |s| s.event_ids == [id]).await;
        let memo_selector = format!("li[data-event-id=\"{id}\"] .payment-memo");
        let memo = client.find(Locator::Css(&memo_selector)).await.unwrap();
        assert_eq!(memo.text().await.unwrap(), evil);
        assert!(
            client
                .find_all(Locator::Css("img"))
                .await
                .unwrap()
                .is_empty(),
            "no img element was created"
        );
        assert!(client.get_alert_text().await.is_err(), "no alert is open");

        // Rendered by the server, after a reload.
        client.refresh().await.unwrap();
        let memo = client.find(Locator::Css(&memo_selector)).await.unwrap();
        assert_eq!(memo.text().await.unwrap(), evil);
        let title = client.find(Locator::Css("#memo")).await.unwrap();
        assert_eq!(title.text().await.unwrap(), evil);
        assert!(
            client
                .find_all(Locator::Css("img"))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(client.get_alert_text().await.is_err(), "no alert is open");
    })
    .await;
}

/// A paywatch started on a given address (the one a stopped server had).
struct Restarted {
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl Restarted {
    async fn start(app: &TestApp) -> Restarted {
        let mut config = app.config.clone();
        config.listen = app.address;
        let server = paywatch::App::build(config)
            .await
            .expect("paywatch restarts on the same port");
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let server =
            tokio::spawn(server.run_until_stopped(async move { stopped.cancelled().await }));
        Restarted { stop, server }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.server
            .await
            .expect("server task")
            .expect("server ran cleanly");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_recovers_from_a_server_restart_and_shows_what_it_missed() {
    let mut app = TestApp::spawn().await;
    let invoice = invoice_with(&app, 10_000, "restart", None).await;
    let before = pay(&app, invoice, 1_000, "").await;
    let url = page_url(app.address, invoice);
    let app_ref = &mut app;
    with_browser(|client| async move {
        client.goto(&url).await.expect("open the page");
        wait_until(&client, "the live badge", |s| {
            s.badge == "live" && s.event_ids == [before]
        })
        .await;

        app_ref.stop().await;
        let app = &*app_ref;
        // Connections keep failing: the page polls the HTTP API meanwhile.
        wait_until(&client, "the polling fallback", |s| s.badge == "polling").await;
        let missed = pay(app, invoice, 2_000, "paid while the server was down").await;
        // The page cannot know yet.
        let now = shown(&client).await;
        assert_eq!(now.event_ids, [before], "{now:?}");

        let restarted = Restarted::start(app).await;
        let now = wait_until(&client, "the payment made during the outage", |s| {
            s.event_ids == [before, missed] && s.status == "Partially paid"
        })
        .await;
        assert_eq!(now.paid, "0.00003 BCH");
        wait_until(&client, "the live badge again", |s| s.badge == "live").await;

        // And live again: the next payment arrives once.
        let after = pay(app, invoice, 7_000, "").await;
        wait_until(&client, "the payment after the restart", |s| {
            s.event_ids == [before, missed, after] && s.status == "Paid"
        })
        .await;
        restarted.stop().await;
    })
    .await;
}

// ------------------------------------------------- HTTP, no browser needed --

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_is_served_with_its_policy_and_refuses_bad_ids_as_json() {
    let app = TestApp::spawn().await;
    let invoice = invoice_with(&app, 150_000, "tea & <cake>", Some(ADDRESS)).await;
    pay(&app, invoice, 50_000, "</p><script>alert(1)</script>").await;

    for path in [
        format!("/invoice/{}", invoice.simple()),
        format!("/invoice/{}/", invoice.hyphenated()),
    ] {
        let response = reqwest::get(app.http(&path)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(headers["content-security-policy"], CSP);
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let html = response.text().await.unwrap();
        assert!(html.contains("tea &amp; &lt;cake&gt;"), "{html}");
        assert!(html.contains("&lt;/p&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("Partially paid"));
        assert!(html.contains(&format!(r#"data-invoice-id="{}""#, invoice.simple())));
        assert!(html.contains(&format!(r#"href="{ADDRESS}?amount=0.0015""#)));
        assert!(html.contains("<svg class=\"qr-code\""));
        assert!(!html.contains("style="), "no inline style");
    }

    for (path, status, code) in [
        (
            "/invoice/not-an-id",
            StatusCode::BAD_REQUEST,
            "invalid_invoice_id",
        ),
        (
            "/invoice/0123456789abcdef0123456789abcdef",
            StatusCode::NOT_FOUND,
            "invoice_not_found",
        ),
    ] {
        let response = reqwest::get(app.http(path)).await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
    }

    for (path, content_type) in [
        ("/static/page.js", "text/javascript; charset=utf-8"),
        ("/static/page.css", "text/css; charset=utf-8"),
    ] {
        let response = reqwest::get(app.http(path)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(response.headers()["content-type"], content_type);
        assert!(
            response.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("max-age="),
            "{path}"
        );
        assert!(!response.text().await.unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_created_over_the_api_keep_a_canonical_address() {
    let app = TestApp::spawn_with(|config| config.api_token = Some(API_TOKEN.to_owned())).await;
    let post = |body: Value| {
        reqwest::Client::new()
            .post(app.http("/api/invoices"))
            .bearer_auth(API_TOKEN)
            .json(&body)
            .send()
    };

    // No prefix, upper case: stored canonical.
    let shouting = ADDRESS
        .trim_start_matches("bitcoincash:")
        .to_ascii_uppercase();
    let response = post(json!({"amount_sats": 1000, "address": shouting}))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["invoice"]["address"], ADDRESS);
    let id: Uuid = body["invoice"]["id"].as_str().unwrap().parse().unwrap();
    let stored: Option<String> = sqlx::query_scalar("select address from invoices where id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored.as_deref(), Some(ADDRESS));
    let read: Value = reqwest::get(app.http(&format!("/api/invoices/{id}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["invoice"]["address"], ADDRESS);

    // Without one: null.
    let response = post(json!({"amount_sats": 1000})).await.unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["invoice"]["address"], Value::Null);

    // A bad checksum, mixed case, or not text at all.
    let mut bad_checksum = ADDRESS.to_owned();
    bad_checksum.pop();
    bad_checksum.push('3');
    for address in [
        json!(bad_checksum),
        json!("bitcoincash:Qr6m7j9njldwwzlg9v7v53unlr4jkmx6eylep8ekg2"),
        json!("nope"),
    ] {
        let response = post(json!({"amount_sats": 1000, "address": address}))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{address}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_address", "{address}");
    }
    let response = post(json!({"amount_sats": 1000, "address": 7}))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // The database refuses a non-canonical address however it is written.
    let refused = sqlx::query("INSERT INTO invoices (amount_sats, address) VALUES (1, $1)")
        .bind(ADDRESS.to_ascii_uppercase())
        .execute(&app.pool)
        .await;
    assert!(refused.is_err(), "the check constraint holds");
}
