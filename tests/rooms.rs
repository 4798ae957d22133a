//! Payments reach exactly the rooms they belong to, and only committed rows
//! reach anyone.

mod common;

use common::{TestApp, address, token, txid};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_inserts_each_produce_a_push() {
    let app = TestApp::spawn().await;
    let invoice = app.create_invoice(100_000).await;
    let shop = address(1);
    let (mut invoice_client, _) = app.invoice_client(invoice).await;
    let (mut address_client, _) = app.address_client(&shop).await;

    let paid_invoice = app.pay_invoice(invoice, 40_000).await;
    let event = invoice_client.next_event().await;
    assert_eq!(event["event_id"], paid_invoice);
    assert_eq!(event["amount_sats"], 40_000);
    assert_eq!(event["invoice"]["id"], invoice.hyphenated().to_string());
    assert_eq!(event["invoice"]["paid_sats"], 40_000);
    assert_eq!(event["invoice"]["status"], "partially_paid");
    assert_eq!(event["address"], Value::Null);

    let paid_address = app.pay_address(&shop, 5_000).await;
    let event = address_client.next_event().await;
    assert_eq!(event["event_id"], paid_address);
    assert_eq!(event["address"], shop);
    assert_eq!(
        event["invoice"],
        Value::Null,
        "address-only payment has no invoice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_with_invoice_address_and_token_reaches_each_of_its_rooms_once_and_no_other() {
    let app = TestApp::spawn().await;
    let invoice = app.create_invoice(1_000).await;
    let other_invoice = app.create_invoice(1_000).await;
    let (shop, other_shop, category) = (address(1), address(2), token(7));

    let (mut invoice_a, _) = app.invoice_client(invoice).await;
    let (mut invoice_b, _) = app.invoice_client(invoice).await;
    let (mut address_room, _) = app.address_client(&shop).await;
    let (mut token_room, _) = app
        .connect(&format!("/ws/watch/address/{shop}/{category}/"))
        .await;
    let (mut legacy_room, _) = app.connect(&format!("/ws/watch/bch/{shop}")).await;
    let (mut other_invoice_room, _) = app.invoice_client(other_invoice).await;
    let (mut other_address_room, _) = app.address_client(&other_shop).await;
    let (mut other_token_room, _) = app
        .connect(&format!("/ws/watch/address/{shop}/{}/", token(8)))
        .await;

    let id: i64 = sqlx::query_scalar(
        "INSERT INTO payments (invoice_id, address, token_id, txid, amount_sats, memo) \
         VALUES ($1, $2, $3, $4, 1000, 'thanks') RETURNING id",
    )
    .bind(invoice)
    .bind(&shop)
    .bind(&category)
    .bind(txid())
    .fetch_one(&app.pool)
    .await
    .unwrap();

    for client in [
        &mut invoice_a,
        &mut invoice_b,
        &mut address_room,
        &mut token_room,
        &mut legacy_room,
    ] {
        let event = client.next_event().await;
        assert_eq!(event["event_id"], id);
        assert_eq!(event["token_id"], category);
        assert_eq!(event["memo"], "thanks");
        assert_eq!(event["invoice"]["status"], "paid");
    }

    // Rooms that must not have received it: after a payment of their own, the
    // next frame each sees is that payment. The same marker insert would also
    // reveal a duplicate in the rooms above.
    let marker_invoice = app.pay_invoice(other_invoice, 1).await;
    assert_eq!(
        other_invoice_room.next_event().await["event_id"],
        marker_invoice
    );
    let marker_address = app.pay_address(&other_shop, 1).await;
    assert_eq!(
        other_address_room.next_event().await["event_id"],
        marker_address
    );
    let marker_token: i64 = sqlx::query_scalar(
        "INSERT INTO payments (address, token_id, txid, amount_sats) VALUES ($1, $2, $3, 1) RETURNING id",
    )
    .bind(&shop)
    .bind(token(8))
    .bind(txid())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        other_token_room.next_event().await["event_id"],
        marker_token
    );
    assert_eq!(address_room.next_event().await["event_id"], marker_token);

    let marker_for_invoice = app.pay_invoice(invoice, 1).await;
    assert_eq!(invoice_a.next_event().await["event_id"], marker_for_invoice);
    assert_eq!(invoice_b.next_event().await["event_id"], marker_for_invoice);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_insert_reaches_nobody() {
    let app = TestApp::spawn().await;
    let invoice = app.create_invoice(1_000).await;
    let (mut client, _) = app.invoice_client(invoice).await;

    let mut tx = app.pool.begin().await.unwrap();
    sqlx::query("INSERT INTO payments (invoice_id, txid, amount_sats) VALUES ($1, $2, 999)")
        .bind(invoice)
        .bind(txid())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let committed = app.pay_invoice(invoice, 10).await;
    let event = client.next_event().await;
    assert_eq!(
        event["event_id"], committed,
        "the rolled-back row was pushed"
    );
    assert_eq!(event["invoice"]["paid_sats"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_opened_after_payment_gets_it_in_the_snapshot() {
    let app = TestApp::spawn().await;
    let invoice = app.create_invoice(1_000).await;
    let first = app.pay_invoice(invoice, 600).await;
    let second = app.pay_invoice(invoice, 400).await;

    let (_client, snapshot) = app.invoice_client(invoice).await;
    assert_eq!(snapshot["invoice"]["status"], "paid");
    assert_eq!(snapshot["invoice"]["paid_sats"], 1_000);
    assert_eq!(snapshot["invoice"]["amount_sats"], 1_000);
    let ids: Vec<&Value> = snapshot["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["event_id"])
        .collect();
    assert_eq!(ids, [&Value::from(first), &Value::from(second)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn address_snapshot_holds_the_most_recent_payments_oldest_first() {
    let app = TestApp::spawn_with(|config| config.address_snapshot_limit = 3).await;
    let shop = address(3);
    let mut ids = Vec::new();
    for amount in 1..=5 {
        ids.push(app.pay_address(&shop, amount).await);
    }
    let bare = shop.trim_start_matches("bitcoincash:");
    let (_client, snapshot) = app.connect(&format!("/ws/watch/address/{bare}")).await;
    assert_eq!(snapshot["address"], shop, "bare address is canonicalised");
    assert_eq!(snapshot["limit"], 3);
    let got: Vec<i64> = snapshot["payments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["event_id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, ids[2..]);
}
