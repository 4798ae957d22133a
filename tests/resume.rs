//! Clients that reconnect with `?after=<cursor>` get exactly the events of
//! their room they have not seen, then live ones, without duplicates.

mod common;

use std::collections::HashSet;

use common::{Client, TestApp, address};
use serde_json::Value;

fn cursor(frame: &Value) -> String {
    frame["cursor"]
        .as_str()
        .expect("every frame has a cursor")
        .to_owned()
}

async fn resume(app: &TestApp, path: &str, after: &str) -> Client {
    app.try_connect(&format!("{path}?after={after}"))
        .await
        .expect("resume accepted")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_with_the_last_cursor_gets_exactly_what_was_missed() {
    let app = TestApp::spawn().await;
    let invoice = app.create_invoice(1_000).await;
    let path = format!("/ws/jpp/invoice/{}/", invoice.simple());
    let (mut client, _) = app.connect(&path).await;
    let first = app.pay_invoice(invoice, 1).await;
    let seen = client.next_event().await;
    assert_eq!(seen["event_id"], first);
    drop(client);

    let missed = [
        app.pay_invoice(invoice, 2).await,
        app.pay_invoice(invoice, 3).await,
    ];
    let mut client = resume(&app, &path, &cursor(&seen)).await;
    for id in missed {
        let event = client.next_event().await;
        assert_eq!(
            event["event_id"], id,
            "missed events first, in order, no snapshot"
        );
    }
    let live = app.pay_invoice(invoice, 4).await;
    assert_eq!(
        client.next_event().await["event_id"],
        live,
        "then live, nothing twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snapshot_cursor_resumes_too() {
    let app = TestApp::spawn().await;
    let shop = address(11);
    let before = app.pay_address(&shop, 1).await;
    let path = format!("/ws/watch/address/{shop}/");
    let (client, snapshot) = app.connect(&path).await;
    assert_eq!(snapshot["payments"][0]["event_id"], before);
    drop(client);

    let missed = app.pay_address(&shop, 2).await;
    let mut client = resume(&app, &path, &cursor(&snapshot)).await;
    assert_eq!(client.next_event().await["event_id"], missed);
    let live = app.pay_address(&shop, 3).await;
    assert_eq!(client.next_event().await["event_id"], live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_committing_payment_is_not_skipped_by_a_resume() {
    let app = TestApp::spawn().await;
    let invoice = app.create_invoice(1_000).await;
    let path = format!("/ws/jpp/invoice/{}/", invoice.simple());
    let (mut client, _) = app.connect(&path).await;

    // The lower id commits after the higher one was delivered: a cursor that
    // were just "the last id seen" would skip it.
    let mut early = app.pool.begin().await.unwrap();
    let low: i64 = sqlx::query_scalar(
        "INSERT INTO payments (invoice_id, txid, amount_sats) VALUES ($1,$2,1) RETURNING id",
    )
    .bind(invoice)
    .bind(common::txid())
    .fetch_one(&mut *early)
    .await
    .unwrap();
    let high = app.pay_invoice(invoice, 2).await;
    let seen = client.next_event().await;
    assert_eq!(seen["event_id"], high);
    assert!(low < high);
    drop(client);

    early.commit().await.unwrap();
    let mut client = resume(&app, &path, &cursor(&seen)).await;
    assert_eq!(client.next_event().await["event_id"], low);
    let live = app.pay_invoice(invoice, 3).await;
    assert_eq!(client.next_event().await["event_id"], live);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_too_far_behind_gets_a_fresh_snapshot() {
    let app = TestApp::spawn_with(|config| config.resume_max_events = 2).await;
    let invoice = app.create_invoice(1_000).await;
    let path = format!("/ws/jpp/invoice/{}/", invoice.simple());
    let (client, snapshot) = app.connect(&path).await;
    drop(client);
    for amount in 1..=3 {
        app.pay_invoice(invoice, amount).await;
    }
    let mut client = resume(&app, &path, &cursor(&snapshot)).await;
    let frame = client.next_json().await;
    assert_eq!(frame["type"], "snapshot");
    assert_eq!(frame["payments"].as_array().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_cursor_is_refused_before_upgrade() {
    let app = TestApp::spawn().await;
    let invoice = app.create_invoice(1_000).await;
    let path = format!("/ws/jpp/invoice/{}/", invoice.simple());
    for bad in ["x", "10:5:", "1:2:3~", "%FF", "1:9:~1:9:~1"] {
        let refused = app.try_connect(&format!("{path}?after={bad}")).await.err();
        assert_eq!(refused, Some(400), "{bad}");
    }
    assert_eq!(app.hub.room_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_keeps_reconnecting_during_writes_sees_every_payment_once() {
    const PAYMENTS: usize = 200;
    let app = TestApp::spawn().await;
    let shop = address(12);
    let path = format!("/ws/watch/address/{shop}/");

    let pool = app.pool.clone();
    let writer_shop = shop.clone();
    let writer = tokio::spawn(async move {
        let mut ids = HashSet::new();
        for _ in 0..PAYMENTS {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO payments (address, txid, amount_sats) VALUES ($1,$2,1) RETURNING id",
            )
            .bind(&writer_shop)
            .bind(common::txid())
            .fetch_one(&pool)
            .await
            .unwrap();
            ids.insert(id);
        }
        ids
    });

    // Read a few events, drop the connection, resume from the last cursor;
    // repeat until every payment has been seen.
    let (mut client, snapshot) = app.connect(&path).await;
    let mut seen: Vec<i64> = snapshot["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["event_id"].as_i64().unwrap())
        .collect();
    let mut last = cursor(&snapshot);
    let mut reconnects = 0;
    while seen.len() < PAYMENTS {
        for _ in 0..7 {
            if seen.len() == PAYMENTS {
                break;
            }
            let event = client.next_event().await;
            seen.push(event["event_id"].as_i64().unwrap());
            last = cursor(&event);
        }
        drop(client);
        client = resume(&app, &path, &last).await;
        reconnects += 1;
    }
    let written = writer.await.unwrap();
    let unique: HashSet<i64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a payment was sent twice");
    assert_eq!(unique, written, "a payment is missing");
    assert!(
        reconnects > 10,
        "the test must really reconnect ({reconnects})"
    );
}
