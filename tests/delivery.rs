//! Every committed payment reaches each connection of its room exactly once:
//! across the snapshot/live seam, and when its notification is lost.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{TestApp, TestDatabase, WAIT, address};
use paywatch::cursor::PgSnapshot;
use paywatch::event::Step;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_live_has_no_gap_and_no_duplicate_under_concurrent_inserts() {
    const PAYMENTS: usize = 150;
    const CLIENTS: usize = 12;
    let app = TestApp::spawn().await;
    let invoice = app.create_invoice(1_000_000).await;

    let pool = app.pool.clone();
    let writer = tokio::spawn(async move {
        let mut ids = Vec::with_capacity(PAYMENTS);
        for _ in 0..PAYMENTS {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO payments (invoice_id, txid, amount_sats) VALUES ($1,$2,1) RETURNING id",
            )
            .bind(invoice)
            .bind(common::txid())
            .fetch_one(&pool)
            .await
            .unwrap();
            ids.push(id);
        }
        ids
    });

    // Clients join one after another while the writer runs, so their
    // snapshot/live seams fall at different points of the stream.
    let mut readers = Vec::new();
    for _ in 0..CLIENTS {
        let (mut client, snapshot) = app.invoice_client(invoice).await;
        readers.push(tokio::spawn(async move {
            let mut seen: Vec<i64> = snapshot["payments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["event_id"].as_i64().unwrap())
                .collect();
            while seen.len() < PAYMENTS {
                let event = client.next_event().await;
                seen.push(event["event_id"].as_i64().unwrap());
            }
            seen
        }));
    }
    let written: HashSet<i64> = writer.await.unwrap().into_iter().collect();
    for reader in readers {
        let seen = reader.await.unwrap();
        let unique: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "a payment was sent twice");
        assert_eq!(unique, written, "a payment is missing");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_whose_notification_is_lost_is_delivered_by_the_sweep() {
    let app = TestApp::spawn_with(|config| config.sweep_interval_ms = 100).await;
    let shop = address(6);
    let (mut client, _) = app.address_client(&shop).await;

    // session_replication_role = replica skips ordinary triggers for this
    // session only: the row commits and no notification is sent.
    let mut connection = app.pool.acquire().await.unwrap();
    sqlx::query("set session_replication_role = replica")
        .execute(&mut *connection)
        .await
        .unwrap();
    let silent: i64 = sqlx::query_scalar(
        "INSERT INTO payments (address, txid, amount_sats) VALUES ($1, $2, 5) RETURNING id",
    )
    .bind(&shop)
    .bind(common::txid())
    .fetch_one(&mut *connection)
    .await
    .unwrap();
    sqlx::query("reset session_replication_role")
        .execute(&mut *connection)
        .await
        .unwrap();
    drop(connection);

    let event = client.next_event().await;
    assert_eq!(event["event_id"], silent);
    assert_eq!(app.stats.counts().recovered, 1);

    // And it is not delivered again once a later notification arrives.
    let next = app.pay_address(&shop, 6).await;
    assert_eq!(client.next_event().await["event_id"], next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_committing_payment_is_delivered_once() {
    let app = TestApp::spawn_with(|config| config.sweep_interval_ms = 50).await;
    let invoice = app.create_invoice(1_000).await;
    let (mut client, _) = app.invoice_client(invoice).await;

    // The first transaction takes the lower id but commits last.
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
    assert!(low < high);
    assert_eq!(client.next_event().await["event_id"], high);

    // Let several sweeps pass while the early transaction is open: they must
    // neither skip it nor deliver anything.
    let before = app.stats.counts().sweeps;
    tokio::time::timeout(WAIT, async {
        while app.stats.counts().sweeps < before + 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("sweeps keep running");
    assert_eq!(
        app.stats.counts().published,
        1,
        "the open transaction's row leaked"
    );
    early.commit().await.unwrap();
    assert_eq!(client.next_event().await["event_id"], low);

    let last = app.pay_invoice(invoice, 3).await;
    assert_eq!(
        client.next_event().await["event_id"],
        last,
        "a payment was delivered twice"
    );
}

async fn admin(app: &TestApp, statement: &str) {
    use sqlx::ConnectOptions;
    let mut connection = app.database.server.connect().await.unwrap();
    sqlx::query(statement)
        .execute(&mut connection)
        .await
        .unwrap();
}

async fn ready_status(app: &TestApp) -> u16 {
    reqwest::get(app.http("/readyz"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn await_ready_status(app: &TestApp, status: u16) {
    tokio::time::timeout(WAIT, async {
        while ready_status(app).await != status {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("/readyz never answered {status}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_outage_turns_readyz_503_and_payments_made_meanwhile_arrive_after_reconnect() {
    // A long sweep interval: recovery must come from the reconnect itself.
    let app = TestApp::spawn_with(|config| config.sweep_interval_ms = 600_000).await;
    let shop = address(9);
    let (mut client, _) = app.address_client(&shop).await;
    let mut writer = app.pool.acquire().await.unwrap();
    let name = app.database.name.clone();

    // Kill the LISTEN backend and keep it from coming back for a while.
    admin(
        &app,
        &format!("alter database \"{name}\" with allow_connections false"),
    )
    .await;
    admin(
        &app,
        &format!(
            "select pg_terminate_backend(pid) from pg_stat_activity \
             where datname = '{name}' and application_name = 'paywatch-listener'"
        ),
    )
    .await;
    await_ready_status(&app, 503).await;

    let during_outage: i64 = sqlx::query_scalar(
        "INSERT INTO payments (address, txid, amount_sats) VALUES ($1, $2, 5) RETURNING id",
    )
    .bind(&shop)
    .bind(common::txid())
    .fetch_one(&mut *writer)
    .await
    .unwrap();
    drop(writer);

    admin(
        &app,
        &format!("alter database \"{name}\" with allow_connections true"),
    )
    .await;
    await_ready_status(&app, 200).await;
    assert_eq!(client.next_event().await["event_id"], during_outage);
    let counts = app.stats.counts();
    assert!(counts.reconnects >= 1, "{counts:?}");
    assert_eq!(counts.recovered, 1, "{counts:?}");

    let after = app.pay_address(&shop, 6).await;
    assert_eq!(client.next_event().await["event_id"], after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_large_commit_reaches_a_reading_client_in_full_and_in_order() {
    const ROWS: i64 = 5_000;
    let app = TestApp::spawn().await;
    let shop = address(10);
    let (mut client, _) = app.address_client(&shop).await;
    let ids: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO payments (address, txid, amount_sats) \
         SELECT $1, md5(g::text) || md5(g::text), 1 FROM generate_series(1, $2) g RETURNING id",
    )
    .bind(&shop)
    .bind(ROWS)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut received = Vec::with_capacity(ids.len());
    while received.len() < ids.len() {
        received.push(client.next_event().await["event_id"].as_i64().unwrap());
    }
    assert_eq!(
        received, ids,
        "every row of the commit, once, in insertion order"
    );
}

/// A TCP proxy to PostgreSQL whose open connections can be frozen: bytes stop
/// flowing both ways but the sockets stay open, as on a half-open connection.
struct FreezingProxy {
    address: std::net::SocketAddr,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio_util::sync::CancellationToken>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl FreezingProxy {
    async fn start(upstream: (String, u16)) -> FreezingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = tokio_util::sync::CancellationToken::new();
        let (registry, stopped) = (connections.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let mut inbound = tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap().0,
                };
                let freeze = tokio_util::sync::CancellationToken::new();
                registry.lock().unwrap().push(freeze.clone());
                let (upstream, stopped) = (upstream.clone(), stopped.clone());
                tokio::spawn(async move {
                    let mut outbound = tokio::net::TcpStream::connect(upstream).await.unwrap();
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = freeze.cancelled() => {
                            // Keep both sockets open, forwarding nothing.
                            stopped.cancelled().await;
                        }
                    }
                });
            }
        });
        FreezingProxy {
            address,
            connections,
            stop,
        }
    }

    fn freeze_open_connections(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.cancel();
        }
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_listener_connection_is_replaced_and_nothing_is_lost() {
    let admin_url = std::env::var("DATABASE_URL").ok();
    let server =
        paywatch::database::locate_server(admin_url.as_deref(), &common::database_config())
            .await
            .unwrap();
    let proxy = FreezingProxy::start((server.get_host().to_owned(), server.get_port())).await;
    let proxy_port = proxy.address.port();
    let app = TestApp::spawn_with(|config| {
        // The LISTEN connection reaches the same database through the proxy.
        let direct: sqlx::postgres::PgConnectOptions = config
            .database
            .database_url
            .as_deref()
            .unwrap()
            .parse()
            .unwrap();
        let proxied = direct.host("127.0.0.1").port(proxy_port);
        config.listener_database_url =
            Some(sqlx::ConnectOptions::to_url_lossy(&proxied).to_string());
        config.listener_heartbeat_s = 1;
        config.sweep_interval_ms = 600_000;
    })
    .await;
    let shop = address(13);
    let (mut client, _) = app.address_client(&shop).await;
    let before = app.pay_address(&shop, 1).await;
    assert_eq!(client.next_event().await["event_id"], before);

    // The LISTEN connection goes silent without an error; a payment commits
    // meanwhile and its notification is lost with the connection.
    proxy.freeze_open_connections();
    let during = app.pay_address(&shop, 2).await;
    assert_eq!(
        client.next_event().await["event_id"],
        during,
        "delivered once the silent connection was replaced"
    );
    assert!(app.stats.counts().reconnects >= 1);
    let after = app.pay_address(&shop, 3).await;
    assert_eq!(client.next_event().await["event_id"], after);
}

/// A delivery step reads the payments index from the oldest transaction the
/// previous step's snapshot may have missed, not from the start: its cost
/// stays the same however many payments the table holds. (A step once read
/// the whole index: PostgreSQL started the scan at the `(xid, id)` row
/// comparison and checked the separate `xid >= xmin` bound on every entry.)
#[tokio::test]
async fn a_delivery_step_reads_only_the_index_pages_of_new_payments() {
    const OLD_PAYMENTS: i64 = 20_000;
    let database = TestDatabase::create().await;
    // One connection: the step's block counts are pending in that backend
    // until it flushes them, which `xid_index_blocks_read` makes it do.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(database.options.clone())
        .await
        .unwrap();
    sqlx::query(
        "insert into payments (address, txid, amount_sats) \
         select $1, md5(n::text) || md5(n::text), 1 from generate_series(1, $2) n",
    )
    .bind(address(1))
    .bind(OLD_PAYMENTS)
    .execute(&pool)
    .await
    .unwrap();
    let before = PgSnapshot::current(&pool).await.unwrap();
    for n in 0..3 {
        sqlx::query("insert into payments (address, txid, amount_sats) values ($1, $2, $3)")
            .bind(address(1))
            .bind(common::txid())
            .bind(n + 1)
            .execute(&pool)
            .await
            .unwrap();
    }
    let index_pages: i64 = sqlx::query_scalar(
        "select pg_relation_size('payments_xid_idx') / current_setting('block_size')::bigint",
    )
    .fetch_one(&pool)
    .await
    .unwrap();

    let blocks_before = xid_index_blocks_read(&pool).await;
    let mut step = Step::begin(before);
    let events = step.next_page(&pool, 512).await.unwrap();
    let blocks = xid_index_blocks_read(&pool).await - blocks_before;

    assert_eq!(
        events.len(),
        3,
        "the step delivers exactly the new payments"
    );
    assert!(
        blocks <= 10,
        "one step read {blocks} blocks of payments_xid_idx ({index_pages} pages) for 3 new payments among {OLD_PAYMENTS}"
    );
}

/// Blocks of `payments_xid_idx` read so far, including this connection's
/// own reads (flushed to the shared statistics first).
async fn xid_index_blocks_read(pool: &PgPool) -> i64 {
    // The flush happens once the backend is idle again, before it reads
    // the next statement.
    sqlx::query("select pg_stat_force_next_flush()")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query_scalar(
        "select (idx_blks_hit + idx_blks_read)::bigint from pg_statio_user_indexes \
         where indexrelname = 'payments_xid_idx'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}
