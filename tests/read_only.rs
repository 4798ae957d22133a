//! The security rule: clients only listen. Nothing a client sends and no
//! forged notification ever produces a frame that did not come from the
//! payments table.

mod common;

use common::{TestApp, address};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cannot_send_fake_payments_to_anyone() {
    // No periodic sweep during the test, so the counters are exact.
    let app = TestApp::spawn_with(|config| config.sweep_interval_ms = 600_000).await;
    let invoice = app.create_invoice(1_000).await;
    let (mut attacker, _) = app.invoice_client(invoice).await;
    let (mut victim, _) = app.invoice_client(invoice).await;

    let fake = json!({
        "type": "payment_received", "event_id": 1, "txid": "f".repeat(64),
        "amount_sats": 999_999, "invoice": {"id": invoice, "status": "paid"}
    });
    attacker
        .socket
        .send(Message::Text(fake.to_string().into()))
        .await
        .unwrap();
    attacker
        .socket
        .send(Message::Binary(fake.to_string().into_bytes().into()))
        .await
        .unwrap();
    attacker
        .socket
        .send(Message::Text("not even json".into()))
        .await
        .unwrap();
    // Once the pong is back the server has read every frame above.
    attacker.round_trip().await;

    let real = app.pay_invoice(invoice, 10).await;
    for client in [&mut attacker, &mut victim] {
        let event = client.next_event().await;
        assert_eq!(
            event["event_id"], real,
            "a client frame was relayed: {event}"
        );
        assert_eq!(event["amount_sats"], 10);
    }
    assert_eq!(app.stats.counts().published, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_client_message_is_closed_with_1009_and_others_keep_being_served() {
    let app = TestApp::spawn_with(|config| config.ws_max_message_bytes = 256).await;
    let invoice = app.create_invoice(1_000).await;
    let (mut flooder, _) = app.invoice_client(invoice).await;
    let (mut bystander, _) = app.invoice_client(invoice).await;

    flooder
        .socket
        .send(Message::Text("x".repeat(4096).into()))
        .await
        .unwrap();
    assert_eq!(flooder.close_code().await, 1009);

    let real = app.pay_invoice(invoice, 10).await;
    assert_eq!(bystander.next_event().await["event_id"], real);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_notifications_never_produce_a_frame() {
    // No periodic sweep during the test, so the counters are exact.
    let app = TestApp::spawn_with(|config| config.sweep_interval_ms = 600_000).await;
    let invoice = app.create_invoice(1_000).await;
    let other = app.create_invoice(1_000).await;
    let shop = address(4);
    let (mut invoice_client, _) = app.invoice_client(invoice).await;
    let (mut other_client, _) = app.invoice_client(other).await;
    let (mut address_client, _) = app.address_client(&shop).await;

    // A real payment of `other`, delivered once to its own room.
    let real_other = app.pay_invoice(other, 5).await;
    assert_eq!(other_client.next_event().await["event_id"], real_other);

    let forged = [
        json!({"type": "payment_received", "invoice": {"id": invoice}, "amount_sats": 1_000})
            .to_string(),
        format!("{{\"id\": {real_other}, \"invoice_id\": \"{invoice}\"}}"),
        // A real id again: already delivered, so not delivered twice.
        real_other.to_string(),
        "999999999".to_owned(),
        "-1".to_owned(),
        "0".to_owned(),
        "garbage".to_owned(),
        String::new(),
    ];
    for payload in &forged {
        sqlx::query("select pg_notify('paywatch_payments', $1)")
            .bind(payload)
            .execute(&app.pool)
            .await
            .unwrap();
    }

    // Notifications arrive in commit order and are handled in order, so once
    // these real payments arrive, every forged one above has been handled.
    let real_invoice = app.pay_invoice(invoice, 7).await;
    let real_address = app.pay_address(&shop, 7).await;
    let real_other_2 = app.pay_invoice(other, 7).await;
    assert_eq!(invoice_client.next_event().await["event_id"], real_invoice);
    assert_eq!(address_client.next_event().await["event_id"], real_address);
    assert_eq!(other_client.next_event().await["event_id"], real_other_2);

    let counts = app.stats.counts();
    assert_eq!(
        counts.published, 4,
        "only real rows are published: {counts:?}"
    );
    assert_eq!(counts.malformed, 6, "{counts:?}");
    assert_eq!(counts.unknown, 1, "{counts:?}");
    assert_eq!(counts.duplicates, 1, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_rooms_are_refused_before_upgrade() {
    let app = TestApp::spawn().await;
    let unknown = uuid::Uuid::new_v4();
    let shop = address(5);
    let bad_checksum = format!("{}q", &shop[..shop.len() - 1]);
    let cases = [
        ("/ws/jpp/invoice/not-a-uuid/".to_owned(), 400),
        (
            "/ws/jpp/invoice/0123456789abcdef0123456789abcdeg/".to_owned(),
            400,
        ),
        (format!("/ws/jpp/invoice/{{{unknown}}}/"), 400),
        (format!("/ws/jpp/invoice/{}/", unknown.simple()), 404),
        (format!("/ws/jpp/invoice/{}", unknown.hyphenated()), 404),
        (format!("/ws/watch/address/{bad_checksum}/"), 400),
        ("/ws/watch/address/bitcoincash:qqqq/".to_owned(), 400),
        (format!("/ws/watch/address/{shop}/not-a-token/"), 400),
        (format!("/ws/watch/bch/{bad_checksum}"), 400),
    ];
    for (path, status) in &cases {
        assert_eq!(app.try_connect(path).await.err(), Some(*status), "{path}");
    }
    assert_eq!(app.hub.room_count(), 0, "a refused request created a room");

    // The accepted spellings of a real invoice.
    let invoice = app.create_invoice(1).await;
    for path in [
        format!("/ws/jpp/invoice/{}/", invoice.simple()),
        format!("/ws/jpp/invoice/{}", invoice.simple()),
        format!("/ws/jpp/invoice/{}/", invoice.hyphenated()),
    ] {
        let (_client, snapshot) = app.connect(&path).await;
        assert_eq!(snapshot["invoice"]["id"], invoice.hyphenated().to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_get_on_a_room_is_told_to_upgrade() {
    let app = TestApp::spawn().await;
    let invoice = app.create_invoice(1).await;
    let response = reqwest::get(app.http(&format!("/ws/jpp/invoice/{}/", invoice.simple())))
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 426);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upgrade_required");
}
