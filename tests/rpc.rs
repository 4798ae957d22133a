//! JSON-RPC 2.0 at /ws/rpc: the specification's examples that apply,
//! subscriptions, limits, and that no method can put anything into a room.

mod common;

use common::{Client, TestApp, address, token};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

impl RpcClient {
    async fn open(app: &TestApp) -> RpcClient {
        RpcClient(app.try_connect("/ws/rpc").await.expect("rpc upgrade"))
    }

    async fn send_text(&mut self, text: &str) {
        self.0
            .socket
            .send(Message::Text(text.into()))
            .await
            .unwrap();
    }

    async fn next(&mut self) -> Value {
        self.0.next_json().await
    }

    async fn call(&mut self, request: Value) -> Value {
        self.send_text(&request.to_string()).await;
        self.next().await
    }

    /// Asserts nothing was sent for what came before: the reply to a fresh
    /// ping is the very next frame.
    async fn expect_silence(&mut self) {
        let reply = self
            .call(json!({"jsonrpc": "2.0", "method": "ping", "id": "barrier"}))
            .await;
        assert_eq!(
            reply,
            json!({"jsonrpc": "2.0", "result": "pong", "id": "barrier"})
        );
    }
}

struct RpcClient(Client);

fn error_code(reply: &Value) -> i64 {
    reply["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {reply}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_specification_examples_that_apply() {
    let app = TestApp::spawn().await;
    let invoice = app.create_invoice(1_000).await;
    let id = invoice.to_string();
    let mut rpc = RpcClient::open(&app).await;

    // rpc call with positional parameters, then with named parameters.
    let by_position = rpc
        .call(json!({"jsonrpc": "2.0", "method": "invoice.get", "params": [id], "id": 1}))
        .await;
    assert_eq!(by_position["jsonrpc"], "2.0");
    assert_eq!(by_position["id"], 1);
    assert_eq!(by_position["result"]["invoice"]["id"], id);
    let by_name = rpc
        .call(json!({"jsonrpc": "2.0", "method": "invoice.get", "params": {"id": id}, "id": 3}))
        .await;
    assert_eq!(by_name["id"], 3);
    assert_eq!(by_name["result"], by_position["result"]);

    // a Notification: no reply, even to an unknown method.
    rpc.send_text(r#"{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}"#)
        .await;
    rpc.send_text(r#"{"jsonrpc": "2.0", "method": "foobar"}"#)
        .await;
    rpc.send_text(r#"{"jsonrpc": "2.0", "method": "ping"}"#)
        .await;
    rpc.expect_silence().await;

    // rpc call of non-existent method
    let reply = rpc
        .call(json!({"jsonrpc": "2.0", "method": "foobar", "id": "1"}))
        .await;
    assert_eq!((error_code(&reply), &reply["id"]), (-32601, &json!("1")));

    // rpc call with invalid JSON
    rpc.send_text(r#"{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]"#)
        .await;
    let reply = rpc.next().await;
    assert_eq!((error_code(&reply), &reply["id"]), (-32700, &Value::Null));

    // rpc call with invalid Request object
    rpc.send_text(r#"{"jsonrpc": "2.0", "method": 1, "params": "bar"}"#)
        .await;
    let reply = rpc.next().await;
    assert_eq!((error_code(&reply), &reply["id"]), (-32600, &Value::Null));

    // rpc call Batch, invalid JSON
    rpc.send_text(
        r#"[
  {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},
  {"jsonrpc": "2.0", "method"
]"#,
    )
    .await;
    let reply = rpc.next().await;
    assert!(reply.is_object(), "a single error, not a batch: {reply}");
    assert_eq!((error_code(&reply), &reply["id"]), (-32700, &Value::Null));

    // rpc call with an empty Array
    rpc.send_text("[]").await;
    let reply = rpc.next().await;
    assert!(reply.is_object(), "a single error, not a batch: {reply}");
    assert_eq!((error_code(&reply), &reply["id"]), (-32600, &Value::Null));

    // rpc call with an invalid Batch (but not empty), and with invalid Batch
    for (batch, count) in [("[1]", 1), ("[1,2,3]", 3)] {
        rpc.send_text(batch).await;
        let reply = rpc.next().await;
        let replies = reply
            .as_array()
            .unwrap_or_else(|| panic!("a batch reply: {reply}"));
        assert_eq!(replies.len(), count);
        for reply in replies {
            assert_eq!((error_code(reply), &reply["id"]), (-32600, &Value::Null));
        }
    }

    // rpc call Batch
    rpc.send_text(&format!(
        r#"[
        {{"jsonrpc": "2.0", "method": "ping", "id": "1"}},
        {{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}},
        {{"jsonrpc": "2.0", "method": "invoice.get", "params": ["{id}"], "id": "2"}},
        {{"foo": "boo"}},
        {{"jsonrpc": "2.0", "method": "foo.get", "params": {{"name": "myself"}}, "id": "5"}},
        {{"jsonrpc": "2.0", "method": "get_data", "id": "9"}}
    ]"#
    ))
    .await;
    let reply = rpc.next().await;
    let replies = reply.as_array().expect("a batch reply");
    assert_eq!(replies.len(), 5, "the notification gets no reply: {reply}");
    assert_eq!(
        replies[0],
        json!({"jsonrpc": "2.0", "result": "pong", "id": "1"})
    );
    assert_eq!(replies[1]["result"]["invoice"]["id"], id);
    assert_eq!(
        (error_code(&replies[2]), &replies[2]["id"]),
        (-32600, &Value::Null)
    );
    assert_eq!(
        (error_code(&replies[3]), &replies[3]["id"]),
        (-32601, &json!("5"))
    );
    assert_eq!(
        (error_code(&replies[4]), &replies[4]["id"]),
        (-32601, &json!("9"))
    );

    // rpc call Batch (all notifications): nothing at all comes back.
    rpc.send_text(
        r#"[
        {"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},
        {"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}
    ]"#,
    )
    .await;
    rpc.expect_silence().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_params_are_explained() {
    let app = TestApp::spawn().await;
    let mut rpc = RpcClient::open(&app).await;
    for (request, code) in [
        (
            json!({"jsonrpc": "2.0", "method": "invoice.get", "params": ["nope"], "id": 1}),
            -32602,
        ),
        (
            json!({"jsonrpc": "2.0", "method": "invoice.get", "params": {"uuid": "x"}, "id": 1}),
            -32602,
        ),
        (
            json!({"jsonrpc": "2.0", "method": "invoice.get", "params": {}, "id": 1}),
            -32602,
        ),
        (
            json!({"jsonrpc": "2.0", "method": "invoice.get", "params": [1], "id": 1}),
            -32602,
        ),
        (
            json!({"jsonrpc": "2.0", "method": "invoice.get", "params": "x", "id": 1}),
            -32600,
        ),
        (
            json!({"jsonrpc": "2.0", "method": "ping", "params": [1], "id": 1}),
            -32602,
        ),
        (
            json!({"jsonrpc": "2.0", "method": "address.subscribe", "params": ["bitcoincash:qqq"], "id": 1}),
            -32602,
        ),
        (
            json!({"jsonrpc": "2.0", "method": "invoice.get", "params": [uuid::Uuid::new_v4()], "id": 1}),
            -32002,
        ),
        (json!({"jsonrpc": "1.0", "method": "ping", "id": 1}), -32600),
        (
            json!({"jsonrpc": "2.0", "method": "ping", "id": [1]}),
            -32600,
        ),
    ] {
        let reply = rpc.call(request.clone()).await;
        assert_eq!(error_code(&reply), code, "{request} -> {reply}");
        let message = reply["error"]["message"].as_str().unwrap();
        assert!(
            !message.is_empty() && !message.contains("panicked"),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_deliver_the_snapshot_then_the_same_events_as_the_rooms() {
    let app = TestApp::spawn().await;
    let invoice = app.create_invoice(1_000).await;
    let shop = address(30);
    let category = token(3);
    let (mut room, _) = app.invoice_client(invoice).await;
    let mut rpc = RpcClient::open(&app).await;

    let reply = rpc
        .call(json!({"jsonrpc": "2.0", "method": "invoice.subscribe", "params": {"id": invoice.simple().to_string()}, "id": 1}))
        .await;
    let invoice_sub = reply["result"]
        .as_str()
        .expect("a subscription id")
        .to_owned();
    let snapshot = rpc.next().await;
    assert_eq!(snapshot["method"], "payment_received");
    assert_eq!(snapshot["params"]["subscription"], invoice_sub.as_str());
    assert_eq!(snapshot["params"]["event"]["type"], "snapshot");
    assert_eq!(snapshot["params"]["event"]["invoice"]["status"], "unpaid");

    let reply = rpc
        .call(json!({"jsonrpc": "2.0", "method": "address.subscribe", "params": [shop, category], "id": 2}))
        .await;
    let token_sub = reply["result"].as_str().unwrap().to_owned();
    assert_ne!(token_sub, invoice_sub);
    assert_eq!(
        rpc.next().await["params"]["event"]["token_id"],
        category.as_str()
    );

    let list = rpc
        .call(json!({"jsonrpc": "2.0", "method": "subscriptions.list", "id": 3}))
        .await;
    assert_eq!(list["result"].as_array().unwrap().len(), 2);

    let paid = app.pay_invoice(invoice, 1_000).await;
    let from_room = room.next_event().await;
    let notification = rpc.next().await;
    assert_eq!(notification["params"]["subscription"], invoice_sub.as_str());
    assert_eq!(
        notification["params"]["event"], from_room,
        "the same event object"
    );
    assert_eq!(from_room["event_id"], paid);

    let reply = rpc
        .call(json!({"jsonrpc": "2.0", "method": "unsubscribe", "params": [invoice_sub], "id": 4}))
        .await;
    assert_eq!(reply["result"], true);
    app.pay_invoice(invoice, 1).await;
    assert_eq!(room.next_event().await["invoice"]["status"], "overpaid");
    rpc.expect_silence().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_method_can_put_anything_into_a_room() {
    let app = TestApp::spawn().await;
    let invoice = app.create_invoice(1_000).await;
    let (mut room, _) = app.invoice_client(invoice).await;
    let mut listener = RpcClient::open(&app).await;
    listener
        .call(
            json!({"jsonrpc": "2.0", "method": "invoice.subscribe", "params": [invoice], "id": 1}),
        )
        .await;
    listener.next().await; // its snapshot

    let mut attacker = RpcClient::open(&app).await;
    let fake = json!({"type": "payment_received", "event_id": 1, "amount_sats": 1_000, "invoice": {"id": invoice, "status": "paid"}});
    for method in [
        "payment_received",
        "publish",
        "invoice.publish",
        "send_update",
        "rpc.publish",
    ] {
        let reply = attacker
            .call(json!({"jsonrpc": "2.0", "method": method, "params": {"subscription": "s1", "event": fake}, "id": 7}))
            .await;
        assert_eq!(error_code(&reply), -32601, "{method}");
        attacker
            .send_text(&json!({"jsonrpc": "2.0", "method": method, "params": [fake]}).to_string())
            .await;
    }
    attacker.expect_silence().await;

    let real = app.pay_invoice(invoice, 5).await;
    assert_eq!(
        room.next_event().await["event_id"],
        real,
        "the room got something else first"
    );
    let notification = listener.next().await;
    assert_eq!(
        notification["params"]["event"]["event_id"], real,
        "the subscriber got something else first"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceeded_limits_get_errors_not_crashes() {
    let app = TestApp::spawn_with(|config| {
        config.rpc_max_subscriptions = 2;
        config.rpc_max_batch = 10;
        config.rpc_max_request_bytes = 2048;
        config.rpc_max_requests_per_s = 6;
    })
    .await;
    let mut rpc = RpcClient::open(&app).await;

    for n in 0..2 {
        let reply = rpc
            .call(json!({"jsonrpc": "2.0", "method": "address.subscribe", "params": [address(40 + n)], "id": n}))
            .await;
        assert!(reply["result"].is_string(), "{reply}");
        rpc.next().await; // snapshot
    }
    let reply = rpc
        .call(json!({"jsonrpc": "2.0", "method": "address.subscribe", "params": [address(42)], "id": 2}))
        .await;
    assert_eq!(error_code(&reply), -32001, "too many subscriptions");

    let batch: Vec<Value> = (0..11)
        .map(|n| json!({"jsonrpc": "2.0", "method": "ping", "id": n}))
        .collect();
    let reply = rpc.call(Value::Array(batch)).await;
    assert_eq!(error_code(&reply), -32600, "batch too large");

    let reply = rpc
        .call(json!({"jsonrpc": "2.0", "method": "ping", "params": {"pad": "x".repeat(4000)}, "id": 9}))
        .await;
    assert_eq!(error_code(&reply), -32600, "request too large");

    // Six requests a second: a batch of eight gets six answers and two errors.
    let batch: Vec<Value> = (0..8)
        .map(|n| json!({"jsonrpc": "2.0", "method": "ping", "id": n}))
        .collect();
    let reply = rpc.call(Value::Array(batch)).await;
    let codes: Vec<Option<i64>> = reply
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["error"]["code"].as_i64())
        .collect();
    assert!(codes.contains(&Some(-32000)), "rate limited: {reply}");
    assert!(codes.contains(&None), "some answered: {reply}");
}
