//! Slow, greedy and hostile clients get their documented refusal or close,
//! and everyone else keeps being served.

mod common;

use std::time::Duration;

use common::{TestApp, WAIT, address};
use futures_util::SinkExt;
use paywatch::rooms::Room;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

async fn await_condition(what: &str, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_off_and_the_others_get_every_event() {
    const COMMITS: i64 = 100;
    const ROWS_PER_COMMIT: i64 = 100;
    let app = TestApp::spawn().await;
    let shop = address(20);
    let room = Room::Address(paywatch::address::CashAddr::parse(&shop).unwrap());
    let (_stalled, _) = app.address_client(&shop).await;
    let (mut reader, _) = app.address_client(&shop).await;

    // 10,000 events of about 2 KB each: far more than socket buffers and the
    // stalled client's queue can hold between them.
    let pool = app.pool.clone();
    let writer_shop = shop.clone();
    let writer = tokio::spawn(async move {
        let mut ids = Vec::new();
        for _ in 0..COMMITS {
            let batch: Vec<i64> = sqlx::query_scalar(
                "INSERT INTO payments (address, txid, amount_sats, memo) \
                 SELECT $1, md5(g::text || clock_timestamp()::text) || md5(g::text), 1, repeat('m', 2000) \
                 FROM generate_series(1, $2) g RETURNING id",
            )
            .bind(&writer_shop)
            .bind(ROWS_PER_COMMIT)
            .fetch_all(&pool)
            .await
            .unwrap();
            ids.extend(batch);
        }
        ids
    });
    let mut received = Vec::new();
    while received.len() < (COMMITS * ROWS_PER_COMMIT) as usize {
        received.push(reader.next_event().await["event_id"].as_i64().unwrap());
    }
    assert_eq!(
        received,
        writer.await.unwrap(),
        "the reader got every event, in order"
    );

    // The stalled client's queue held at most PAYWATCH_WS_QUEUE events; once
    // it was full, the hub let go of it instead of buffering without bound.
    await_condition("the stalled client is dropped from its room", || {
        app.hub.subscriber_count(&room) == 1
    })
    .await;
    assert!(app.hub.evictions() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_caps_are_refused_before_upgrade() {
    let app = TestApp::spawn_with(|config| {
        config.max_connections = 3;
        config.max_connections_per_ip = 2;
    })
    .await;
    let shop = address(21);
    let path = format!("/ws/watch/address/{shop}/");
    let first = app.connect(&path).await;
    let _second = app.connect(&path).await;
    assert_eq!(app.try_connect(&path).await.err(), Some(429), "per-IP cap");
    drop(first);
    // The freed place can be taken again once the server has seen the close.
    tokio::time::timeout(WAIT, async {
        loop {
            match app.try_connect(&path).await {
                Ok(_) => break,
                Err(429) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(other) => panic!("unexpected status {other}"),
            }
        }
    })
    .await
    .expect("a freed place is reusable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_cap_answers_503() {
    let app = TestApp::spawn_with(|config| config.max_connections = 1).await;
    let path = format!("/ws/watch/address/{}/", address(22));
    let _only = app.connect(&path).await;
    assert_eq!(app.try_connect(&path).await.err(), Some(503));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_origins_are_refused_when_an_allow_list_is_set() {
    let app = TestApp::spawn_with(|config| {
        config.allowed_origins = vec!["https://shop.example".to_owned()];
    })
    .await;
    let url = app.ws_url(&format!("/ws/watch/address/{}/", address(23)));
    let with_origin = |origin: &'static str| {
        let mut request = url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        request
    };
    match tokio_tungstenite::connect_async(with_origin("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403)
        }
        other => panic!("foreign origin was not refused: {:?}", other.map(|_| ())),
    }
    tokio_tungstenite::connect_async(with_origin("https://shop.example"))
        .await
        .expect("listed origin is allowed");
    tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("no Origin (not a browser) is allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_and_malformed_frames_get_their_close_codes_and_others_keep_being_served() {
    let app = TestApp::spawn_with(|config| config.ws_max_frames_per_s = 10).await;
    let invoice = app.create_invoice(1_000).await;
    let (mut bystander, _) = app.invoice_client(invoice).await;

    let (mut flooder, _) = app.invoice_client(invoice).await;
    for _ in 0..50 {
        if flooder
            .socket
            .send(Message::Text("hi".into()))
            .await
            .is_err()
        {
            break;
        }
    }
    assert_eq!(flooder.close_code().await, 1008, "too many frames");

    let (mut garbler, _) = app.invoice_client(invoice).await;
    let invalid_utf8 = Frame::message(vec![0xff, 0xfe, 0xfd], OpCode::Data(Data::Text), true);
    garbler
        .socket
        .send(Message::Frame(invalid_utf8))
        .await
        .unwrap();
    assert_eq!(garbler.close_code().await, 1007, "invalid UTF-8");

    let (mut oversize, _) = app.invoice_client(invoice).await;
    oversize
        .socket
        .send(Message::Binary(vec![0u8; 64 * 1024].into()))
        .await
        .unwrap();
    assert_eq!(
        oversize.close_code().await,
        1009,
        "binary over the size limit"
    );

    let real = app.pay_invoice(invoice, 5).await;
    assert_eq!(bystander.next_event().await["event_id"], real);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_request_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(|config| config.handshake_timeout_s = 1).await;
    let mut silent = tokio::net::TcpStream::connect(app.address).await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(app.address).await.unwrap();
    slow.write_all(b"GET /ws/watch/bch/x HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for (name, stream) in [("silent", &mut silent), ("slow", &mut slow)] {
        let mut buffer = Vec::new();
        // The server gives up on the request head and closes: the read ends.
        tokio::time::timeout(WAIT, stream.read_to_end(&mut buffer))
            .await
            .unwrap_or_else(|_| panic!("server did not close the {name} connection"))
            .ok();
    }
    // And it still serves complete requests.
    let healthz = reqwest::get(app.http("/healthz")).await.unwrap();
    assert_eq!(healthz.status().as_u16(), 200);
}
