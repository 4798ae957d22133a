//! Connection lifecycle: dead peers are dropped, shutdown says goodbye.

mod common;

use std::time::Duration;

use common::{TestApp, WAIT};
use paywatch::rooms::Room;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_that_never_answers_pings_is_dropped() {
    let app = TestApp::spawn_with(|config| config.ws_ping_interval_s = 1).await;
    let invoice = app.create_invoice(1_000).await;
    let room = Room::Invoice(invoice.into());
    // The client reads its snapshot and then never polls its socket again, so
    // it never answers the server's pings.
    let (_silent, _) = app.invoice_client(invoice).await;
    assert_eq!(app.hub.subscriber_count(&room), 1);
    tokio::time::timeout(WAIT, async {
        while app.hub.subscriber_count(&room) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the silent peer is dropped after a ping interval without an answer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_connection_with_1001() {
    let mut app = TestApp::spawn().await;
    let invoice = app.create_invoice(1_000).await;
    let (mut first, _) = app.invoice_client(invoice).await;
    let (mut second, _) = app.address_client(&common::address(1)).await;
    app.stop().await;
    assert_eq!(first.close_code().await, 1001);
    assert_eq!(second.close_code().await, 1001);
}
