//! The HTTP API: invoice creation behind the bearer token, invoice reads, and
//! errors with a stable JSON shape.

mod common;

use common::TestApp;
use reqwest::StatusCode;
use serde_json::{Value, json};

const TOKEN: &str = "test-token-0123456789";

async fn post(app: &TestApp, body: &str, token: Option<&str>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(app.http("/api/invoices"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    (response.status(), response.json().await.unwrap())
}

async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let response = reqwest::get(app.http(path)).await.unwrap();
    (response.status(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_without_a_configured_token_is_forbidden_with_an_explanation() {
    let app = TestApp::spawn().await;
    let (status, body) = post(&app, r#"{"amount_sats": 1000}"#, Some("anything")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "creation_disabled");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PAYWATCH_API_TOKEN")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_requires_the_bearer_token() {
    let app = TestApp::spawn_with(|config| config.api_token = Some(TOKEN.to_owned())).await;
    for token in [None, Some("wrong"), Some("")] {
        let (status, body) = post(&app, r#"{"amount_sats": 1000}"#, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let count: i64 = sqlx::query_scalar("select count(*) from invoices")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_invoice_can_be_read_back_with_totals_and_payments() {
    let app = TestApp::spawn_with(|config| config.api_token = Some(TOKEN.to_owned())).await;
    let (status, created) = post(
        &app,
        r#"{"amount_sats": 5000, "memo": "table 4", "expires_in_s": 600}"#,
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["invoice"]["status"], "unpaid");
    assert_eq!(created["invoice"]["memo"], "table 4");
    let id: uuid::Uuid = created["invoice"]["id"].as_str().unwrap().parse().unwrap();

    let payment = app.pay_invoice(id, 2000).await;
    let (status, read) = get(&app, &format!("/api/invoices/{}", id.simple())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["invoice"]["paid_sats"], 2000);
    assert_eq!(read["invoice"]["status"], "partially_paid");
    assert_eq!(read["payments"][0]["event_id"], payment);
    assert_eq!(
        read["payments"][0]["invoice_id"],
        id.hyphenated().to_string()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx_never_a_500() {
    let app = TestApp::spawn_with(|config| config.api_token = Some(TOKEN.to_owned())).await;
    let cases = [
        ("not json", "invalid_body"),
        (r#"{"memo": "no amount"}"#, "invalid_body"),
        (r#"{"amount_sats": "1000"}"#, "invalid_body"),
        (r#"{"amount_sats": 1000, "extra": 1}"#, "invalid_body"),
        (r#"{"amount_sats": 0}"#, "invalid_amount"),
        (r#"{"amount_sats": -5}"#, "invalid_amount"),
        (r#"{"amount_sats": 99999999999999999999}"#, "invalid_body"),
        (
            r#"{"amount_sats": 1000, "expires_in_s": 1}"#,
            "invalid_expiry",
        ),
    ];
    for (body, code) in cases {
        let (status, error) = post(&app, body, Some(TOKEN)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error["error"]["code"], code, "{body}: {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
    }
    let long_memo = json!({"amount_sats": 1, "memo": "m".repeat(1001)}).to_string();
    let (status, error) = post(&app, &long_memo, Some(TOKEN)).await;
    assert_eq!(
        (status, &error["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_memo"))
    );

    let (status, error) = get(&app, "/api/invoices/nope").await;
    assert_eq!(
        (status, &error["error"]["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_invoice_id"))
    );
    let unknown = uuid::Uuid::new_v4();
    let (status, error) = get(&app, &format!("/api/invoices/{unknown}")).await;
    assert_eq!(
        (status, &error["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("invoice_not_found"))
    );
    let (status, error) = get(&app, "/no/such/path").await;
    assert_eq!(
        (status, &error["error"]["code"]),
        (StatusCode::NOT_FOUND, &json!("not_found"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness() {
    let app = TestApp::spawn().await;
    let healthz = reqwest::get(app.http("/healthz")).await.unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
    let readyz = reqwest::get(app.http("/readyz")).await.unwrap();
    assert_eq!(
        readyz.status(),
        StatusCode::OK,
        "listener connected at start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened() {
    let app = TestApp::spawn_with(|config| config.sweep_interval_ms = 600_000).await;
    let invoice = app.create_invoice(1_000).await;
    let (mut client, _) = app.invoice_client(invoice).await;
    sqlx::query("select pg_notify('paywatch_payments', 'forged')")
        .execute(&app.pool)
        .await
        .unwrap();
    let id = app.pay_invoice(invoice, 10).await;
    assert_eq!(client.next_event().await["event_id"], id);

    let response = reqwest::get(app.http("/metrics")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    for line in [
        "paywatch_websocket_connections 1",
        "paywatch_rooms 1",
        "paywatch_events_published_total 1",
        "paywatch_frames_queued_total 1",
        "paywatch_notifications_malformed_total 1",
        "paywatch_commit_to_queue_seconds_count 1",
        "paywatch_slow_client_disconnects_total 0",
        "paywatch_listener_reconnects_total 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in:\n{text}"
        );
    }
}
