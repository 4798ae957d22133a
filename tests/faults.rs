//! Fault injection on real PostgreSQL: the LISTEN connection killed again and
//! again under a steady stream of commits, and the whole server restarted
//! mid-stream. Every client must still get every payment of its room exactly
//! once, and nothing from any other room.
//!
//! How "exactly once" is checked: clients join before (or, for some, during)
//! the stream and read until a final sentinel payment of their room, inserted
//! after all the faults and after a last listener reconnect. Every frame before
//! the sentinel (plus the client's snapshot) must be exactly the set of ids the
//! writers got back from `RETURNING id` for that room, each once.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Client, TestApp, WAIT, address};
use paywatch::address::CashAddr;
use paywatch::cli::room_path;
use paywatch::database::cluster::PrivateCluster;
use paywatch::database::{self, quote_identifier};
use paywatch::ids::InvoiceId;
use paywatch::listener::ListenerStats;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgConnection, PgPool};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Upper bound on a whole test, so that nothing can hang.
const TEST_LIMIT: Duration = Duration::from_secs(45);
/// Memo of the last payment of each room; a client stops reading at it.
const SENTINEL: &str = "sentinel";
/// Long enough that no periodic sweep runs during a test: every payment whose
/// notification was lost must come back through the reconnect catch-up.
const NO_SWEEP_MS: u64 = 600_000;

/// A room the test writes to and watches.
#[derive(Debug, Clone)]
enum Room {
    Invoice(Uuid),
    Address(String),
}

impl Room {
    fn path(&self) -> String {
        let path = match self {
            Room::Invoice(id) => room_path(Some(InvoiceId::from(*id)), None, None),
            Room::Address(address) => {
                room_path(None, Some(&CashAddr::parse(address).unwrap()), None)
            }
        };
        path.unwrap()
    }

    /// Inserts one payment of this room, the way a merchant's backend would.
    async fn insert(
        &self,
        db: impl sqlx::PgExecutor<'_>,
        txid: &str,
        memo: &str,
    ) -> Result<i64, sqlx::Error> {
        let (invoice, address) = match self {
            Room::Invoice(id) => (Some(*id), None),
            Room::Address(address) => (None, Some(address.as_str())),
        };
        sqlx::query_scalar(
            "INSERT INTO payments (invoice_id, address, txid, amount_sats, memo) \
             VALUES ($1, $2, $3, 1, $4) RETURNING id",
        )
        .bind(invoice)
        .bind(address)
        .bind(txid)
        .bind(memo)
        .fetch_one(db)
        .await
    }

    /// Whether a `payment_received` frame belongs to this room.
    fn owns(&self, frame: &Value) -> bool {
        match self {
            Room::Invoice(id) => {
                frame["invoice"]["id"] == id.to_string() && frame["address"].is_null()
            }
            Room::Address(address) => frame["address"] == *address && frame["invoice"].is_null(),
        }
    }
}

/// Inserts one payment, retrying until it is committed (at most [`WAIT`]).
/// A failed attempt may still have committed, its reply lost with the
/// connection, so a retry first looks the payment up by its (random) txid:
/// the id returned is the one row this call committed.
async fn insert_retrying(pool: &PgPool, room: &Room, memo: &str, failures: &AtomicUsize) -> i64 {
    let txid = common::txid();
    let give_up = Instant::now() + WAIT;
    let mut retry = false;
    loop {
        let attempt = async {
            if retry {
                let found: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM payments WHERE txid = $1")
                        .bind(&txid)
                        .fetch_optional(pool)
                        .await?;
                if let Some(id) = found {
                    return Ok(id);
                }
            }
            room.insert(pool, &txid, memo).await
        };
        match attempt.await {
            Ok(id) => return id,
            Err(error) => {
                failures.fetch_add(1, Ordering::SeqCst);
                assert!(
                    Instant::now() < give_up,
                    "could not insert a payment within {WAIT:?}: {error}"
                );
                retry = true;
                // Back-off between attempts, not a wait for a condition.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// Polls `condition` until it holds; fails the test after [`WAIT`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what}: not within {WAIT:?}"));
}

/// Waits until `/readyz` of `server` answers `status`.
async fn await_ready_status(server: SocketAddr, status: u16) {
    let url = format!("http://{server}/readyz");
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(response) = reqwest::get(&url).await
                && response.status().as_u16() == status
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("/readyz never answered {status} within {WAIT:?}"));
}

/// Opens a WebSocket on `room` and returns it with its snapshot frame.
async fn join(server: SocketAddr, room: &Room) -> (Client, Value) {
    let url = format!("ws://{server}{}", room.path());
    let (socket, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&url))
        .await
        .unwrap_or_else(|_| panic!("no upgrade of {url} within {WAIT:?}"))
        .unwrap_or_else(|error| panic!("upgrade of {url} refused: {error}"));
    let mut client = Client { socket };
    let snapshot = client.next_json().await;
    assert_eq!(snapshot["type"], "snapshot", "first frame: {snapshot}");
    if let Some(limit) = snapshot["limit"].as_i64() {
        // Otherwise the snapshot may leave earlier payments out, and the
        // client could not be expected to have them all.
        assert!(
            (snapshot["payments"].as_array().unwrap().len() as i64) < limit,
            "address snapshot is full; the test writes too many payments per room"
        );
    }
    (client, snapshot)
}

/// Reads `client` until its room's sentinel; returns every payment id it got,
/// the snapshot's first, in the order received. Fails on a frame from another
/// room or when [`WAIT`] passes without a frame.
fn read_until_sentinel(mut client: Client, snapshot: Value, room: Room) -> JoinHandle<Vec<i64>> {
    tokio::spawn(async move {
        let mut seen: Vec<i64> = snapshot["payments"]
            .as_array()
            .expect("snapshot payments")
            .iter()
            .map(|payment| payment["event_id"].as_i64().expect("event_id"))
            .collect();
        loop {
            let event = client.next_event().await;
            assert!(room.owns(&event), "frame leaked into {room:?}: {event}");
            seen.push(event["event_id"].as_i64().expect("event_id"));
            if event["memo"] == SENTINEL {
                return seen;
            }
        }
    })
}

/// A client's reader and the room it reads.
struct Reader {
    room: usize,
    label: String,
    handle: JoinHandle<Vec<i64>>,
}

async fn spawn_reader(server: SocketAddr, rooms: &[Room], room: usize, label: String) -> Reader {
    let (client, snapshot) = join(server, &rooms[room]).await;
    Reader {
        room,
        label,
        handle: read_until_sentinel(client, snapshot, rooms[room].clone()),
    }
}

/// Inserts the sentinel of every room; returns their ids.
async fn insert_sentinels(pool: &PgPool, rooms: &[Room], failures: &AtomicUsize) -> Vec<i64> {
    let mut ids = Vec::with_capacity(rooms.len());
    for room in rooms {
        ids.push(insert_retrying(pool, room, SENTINEL, failures).await);
    }
    ids
}

/// Checks that every reader got exactly the payments of its room, each once,
/// ending with the room's sentinel.
async fn check_readers(
    readers: Vec<Reader>,
    expected: &HashMap<usize, HashSet<i64>>,
    sentinels: &[i64],
) {
    for reader in readers {
        let seen = reader.handle.await.expect("reader");
        let want = &expected[&reader.room];
        let got: HashSet<i64> = seen.iter().copied().collect();
        let mut counts: HashMap<i64, usize> = HashMap::new();
        for id in &seen {
            *counts.entry(*id).or_default() += 1;
        }
        let mut duplicated: Vec<i64> = counts
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(id, _)| id)
            .collect();
        duplicated.sort_unstable();
        let mut missing: Vec<i64> = want.difference(&got).copied().collect();
        missing.sort_unstable();
        let mut extra: Vec<i64> = got.difference(want).copied().collect();
        extra.sort_unstable();
        assert!(
            duplicated.is_empty() && missing.is_empty() && extra.is_empty(),
            "{} (room {}): duplicated {duplicated:?}, missing {missing:?}, not of this room {extra:?}",
            reader.label,
            reader.room
        );
        assert_eq!(seen.len(), want.len());
        assert_eq!(seen.last(), Some(&sentinels[reader.room]));
    }
}

/// Terminates the LISTEN backend(s) of database `name`; returns how many.
async fn kill_listener(admin: &mut PgConnection, name: &str) -> usize {
    let killed: Vec<bool> = sqlx::query_scalar(
        "select pg_terminate_backend(pid) from pg_stat_activity \
         where datname = $1 and application_name = 'paywatch-listener'",
    )
    .bind(name)
    .fetch_all(&mut *admin)
    .await
    .expect("pg_terminate_backend");
    killed.into_iter().filter(|done| *done).count()
}

async fn allow_connections(admin: &mut PgConnection, name: &str, allow: bool) {
    sqlx::query(&format!(
        "alter database {} with allow_connections {allow}",
        quote_identifier(name)
    ))
    .execute(&mut *admin)
    .await
    .expect("alter database");
}

fn reconnects(stats: &ListenerStats) -> u64 {
    stats.counts().reconnects
}

/// Two transactions that insert early and commit late. The first commits once
/// a payment inserted after it has been delivered to a client; the second, in
/// addition, stays open across a kill of the listener. Returns their
/// `(room, id)`.
async fn late_commits(
    pool: PgPool,
    rooms: Arc<Vec<Room>>,
    mut probe: Client,
    stats: Arc<ListenerStats>,
    inserted: tokio::sync::oneshot::Sender<()>,
) -> Vec<(usize, i64)> {
    let (first_room, second_room) = (4, 1);
    let mut first = pool.begin().await.expect("begin");
    let low = rooms[first_room]
        .insert(&mut *first, &common::txid(), "late")
        .await
        .expect("insert");
    let mut second = pool.begin().await.expect("begin");
    let held = rooms[second_room]
        .insert(&mut *second, &common::txid(), "late, across a kill")
        .await
        .expect("insert");
    let _ = inserted.send(());

    // The probe watches room 0, which every writer writes to: once it gets a
    // higher id, a payment inserted after both of ours has been delivered.
    let newest = low.max(held);
    loop {
        let event = probe.next_event().await;
        if event["event_id"].as_i64().expect("event_id") > newest {
            break;
        }
    }
    first.commit().await.expect("commit");
    let before = reconnects(&stats);
    wait_until("a listener kill while a late transaction is open", || {
        reconnects(&stats) > before
    })
    .await;
    second.commit().await.expect("commit");
    vec![(first_room, low), (second_room, held)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_killed_repeatedly_under_steady_writes_loses_and_duplicates_nothing() {
    tokio::time::timeout(TEST_LIMIT, listener_kills())
        .await
        .expect("the test finishes in time");
}

async fn listener_kills() {
    const WRITERS: usize = 4;
    const MIN_PER_WRITER: usize = 60;
    const MAX_PER_WRITER: usize = 1_000;
    const CLIENTS_PER_ROOM: usize = 3;
    const KILLS: usize = 6;
    /// From this kill on, once the late transactions are done, one kill keeps
    /// the listener out (the database refuses connections) while a payment
    /// commits, so its notification is certainly lost. The writers pause
    /// meanwhile: with no other commit to wake the listener, only the
    /// catch-up after the reconnect can deliver that payment.
    const OUTAGE_KILL: usize = 3;
    /// Payments written between two kills.
    const ROWS_BETWEEN_KILLS: usize = 25;
    let started = Instant::now();

    let app = TestApp::spawn_with(|config| config.sweep_interval_ms = NO_SWEEP_MS).await;
    let server = app.address;
    let name = app.database.name.clone();
    let mut rooms = Vec::new();
    for _ in 0..3 {
        rooms.push(Room::Invoice(app.create_invoice(1_000_000_000).await));
    }
    for n in 0..3 {
        rooms.push(Room::Address(address(40 + n)));
    }
    let rooms = Arc::new(rooms);
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(2))
        .connect_with(app.database.options.clone())
        .await
        .expect("writers' pool");
    let mut admin = app
        .database
        .server
        .connect()
        .await
        .expect("admin connection");
    // Opened now: it still works while the database refuses new connections.
    let mut outage_writer = app.database.options.connect().await.expect("connection");

    let mut readers = Vec::new();
    for room in 0..rooms.len() {
        for n in 0..CLIENTS_PER_ROOM {
            readers.push(spawn_reader(server, &rooms, room, format!("client {n}")).await);
        }
    }
    let (probe, _) = join(server, &rooms[0]).await;
    let (mut outage_probe, _) = join(server, &rooms[5]).await;

    let written = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    // Writers insert under a read lock; the outage kill takes the write lock.
    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let (pool, rooms, written, failures, stop, gate) = (
            pool.clone(),
            Arc::clone(&rooms),
            Arc::clone(&written),
            Arc::clone(&failures),
            stop.clone(),
            Arc::clone(&gate),
        );
        writers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut mine = Vec::new();
            let mut i = 0;
            while !(stop.is_cancelled() && i >= MIN_PER_WRITER) {
                assert!(i < MAX_PER_WRITER, "writer {w} never told to stop");
                tick.tick().await;
                let _turn = gate.read().await;
                let room = (w + i) % rooms.len();
                mine.push((
                    room,
                    insert_retrying(&pool, &rooms[room], "", &failures).await,
                ));
                written.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
            mine
        }));
    }
    let (inserted, late_inserted) = tokio::sync::oneshot::channel();
    let late = tokio::spawn(late_commits(
        pool.clone(),
        Arc::clone(&rooms),
        probe,
        Arc::clone(&app.stats),
        inserted,
    ));
    tokio::time::timeout(WAIT, late_inserted)
        .await
        .expect("late transactions insert in time")
        .expect("late transactions insert");

    let mut outage_payment = None;
    let mut kills = 0;
    let mut mark = written.load(Ordering::SeqCst);
    while kills < KILLS || !late.is_finished() || outage_payment.is_none() {
        assert!(kills < 100, "the late transactions never finished");
        wait_until("writers make progress between kills", || {
            written.load(Ordering::SeqCst) >= mark + ROWS_BETWEEN_KILLS
        })
        .await;
        let before = reconnects(&app.stats);
        if kills >= OUTAGE_KILL && late.is_finished() && outage_payment.is_none() {
            let paused = tokio::time::timeout(WAIT, gate.write())
                .await
                .expect("writers pause");
            allow_connections(&mut admin, &name, false).await;
            assert!(
                kill_listener(&mut admin, &name).await >= 1,
                "no listener to kill"
            );
            await_ready_status(server, 503).await;
            // Committed while nobody listens: its notification is gone.
            let id = rooms[5]
                .insert(&mut outage_writer, &common::txid(), "during outage")
                .await
                .expect("insert during the outage");
            outage_payment = Some((5, id));
            allow_connections(&mut admin, &name, true).await;
            await_ready_status(server, 200).await;
            while outage_probe.next_event().await["event_id"] != id {}
            drop(paused);
        } else {
            assert!(
                kill_listener(&mut admin, &name).await >= 1,
                "no listener to kill"
            );
        }
        wait_until("the listener reconnects", || {
            reconnects(&app.stats) > before
        })
        .await;
        kills += 1;
        mark = written.load(Ordering::SeqCst);
        if kills == 1 {
            // Clients joining mid-stream, between faults: their snapshot/live
            // seam must hold too.
            for room in 0..rooms.len() {
                readers.push(spawn_reader(server, &rooms, room, "late joiner".into()).await);
            }
        }
    }
    stop.cancel();

    let mut expected: HashMap<usize, HashSet<i64>> = HashMap::new();
    let mut record = |room: usize, id: i64| {
        assert!(
            expected.entry(room).or_default().insert(id),
            "id {id} twice"
        );
    };
    for writer in writers {
        for (room, id) in writer.await.expect("writer") {
            record(room, id);
        }
    }
    for (room, id) in late.await.expect("late transactions") {
        record(room, id);
    }
    let (room, id) = outage_payment.expect("the outage kill happened");
    record(room, id);

    // A last reconnect after everything: a catch-up that redelivers would
    // show up before the sentinels.
    let before = reconnects(&app.stats);
    assert!(
        kill_listener(&mut admin, &name).await >= 1,
        "no listener to kill"
    );
    wait_until("the listener reconnects", || {
        reconnects(&app.stats) > before
    })
    .await;
    let sentinels = insert_sentinels(&pool, &rooms, &failures).await;
    for (room, id) in sentinels.iter().enumerate() {
        record(room, *id);
    }
    let total: usize = expected.values().map(HashSet::len).sum();
    let clients = readers.len();
    check_readers(readers, &expected, &sentinels).await;

    let counts = app.stats.counts();
    assert_eq!(
        counts.published, total as u64,
        "the listener published some payment twice or not at all: {counts:?}"
    );
    assert!(counts.reconnects > KILLS as u64, "{counts:?}");
    eprintln!(
        "{total} payments, {} kills, {clients} clients, writer retries {}, {counts:?}, {:?}",
        kills + 1,
        failures.load(Ordering::SeqCst),
        started.elapsed()
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A private cluster of this test's own, stopped and removed when dropped,
/// also when the test fails.
struct OwnCluster {
    cluster: PrivateCluster,
    root: PathBuf,
}

impl OwnCluster {
    async fn start() -> OwnCluster {
        // Under the system temp folder: as root, the cluster runs as
        // `postgres`, which must be able to reach it.
        let root =
            std::env::temp_dir().join(format!("paywatch-faults-{}", Uuid::new_v4().simple()));
        let own = OwnCluster {
            cluster: PrivateCluster::new(&root, free_port()),
            root,
        };
        own.cluster
            .ensure_running()
            .await
            .expect("private cluster starts");
        own
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let cluster = self.cluster.clone();
        let root = self.root.clone();
        // Drop cannot await inside the test's runtime: stop from a thread with
        // a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                let _ = runtime.block_on(cluster.stop());
            }
            let _ = std::fs::remove_dir_all(&root);
        });
        let _ = cleanup.join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_mid_stream_loses_and_duplicates_nothing() {
    tokio::time::timeout(TEST_LIMIT, postgres_restart())
        .await
        .expect("the test finishes in time");
}

async fn postgres_restart() {
    const PAYMENTS: usize = 150;
    const CLIENTS_PER_ROOM: usize = 3;
    let started = Instant::now();

    let own = OwnCluster::start().await;
    let server: PgConnectOptions = own.cluster.admin_url().parse().expect("admin url");
    let name = format!("paywatch_faults_{}", Uuid::new_v4().simple());
    database::create_database_if_missing(&server, &name)
        .await
        .expect("create database");
    let options = server.clone().database(&name);
    let setup = database::connect(&options, 2).await.expect("connect");
    database::migrate(&setup).await.expect("migrate");
    setup.close().await;
    let test_database = common::TestDatabase {
        url: options.to_url_lossy().to_string(),
        server,
        name,
        options: options.clone(),
    };
    let mut config = common::test_config(&test_database);
    config.sweep_interval_ms = NO_SWEEP_MS;
    let app = paywatch::App::build(config).await.expect("paywatch starts");
    let address = app.local_addr();
    let stats = app.listener_stats();
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let serving = tokio::spawn(app.run_until_stopped(async move { stopped.cancelled().await }));

    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect_with(options.clone())
        .await
        .expect("writer's pool");
    let invoice: Uuid =
        sqlx::query_scalar("INSERT INTO invoices (amount_sats) VALUES ($1) RETURNING id")
            .bind(1_000_000_000_i64)
            .fetch_one(&pool)
            .await
            .expect("invoice");
    let rooms = Arc::new(vec![
        Room::Invoice(invoice),
        Room::Address(common::address(50)),
    ]);
    let mut readers = Vec::new();
    for room in 0..rooms.len() {
        for n in 0..CLIENTS_PER_ROOM {
            readers.push(spawn_reader(address, &rooms, room, format!("client {n}")).await);
        }
    }

    let written = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    // The writer inserts under a read lock; the test pauses it with the write lock.
    let gate = Arc::new(tokio::sync::RwLock::new(()));
    let writer = {
        let (pool, rooms, written, failures, gate) = (
            pool.clone(),
            Arc::clone(&rooms),
            Arc::clone(&written),
            Arc::clone(&failures),
            Arc::clone(&gate),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut out = Vec::with_capacity(PAYMENTS);
            for i in 0..PAYMENTS {
                tick.tick().await;
                let _turn = gate.read().await;
                let room = i % rooms.len();
                out.push((
                    room,
                    insert_retrying(&pool, &rooms[room], "", &failures).await,
                ));
                written.fetch_add(1, Ordering::SeqCst);
            }
            out
        })
    };

    wait_until("a third of the payments are written", || {
        written.load(Ordering::SeqCst) >= PAYMENTS / 3
    })
    .await;
    // Just before the stop, a payment commits whose notification the listener
    // never reads, as when the connection dies first: no step runs between
    // its commit and the stop (writer paused, everything earlier delivered,
    // no periodic sweep), so only the catch-up after the restart delivers it.
    let paused = tokio::time::timeout(WAIT, gate.write())
        .await
        .expect("the writer pauses");
    wait_until("everything written so far is delivered", || {
        stats.counts().published >= written.load(Ordering::SeqCst) as u64
    })
    .await;
    let mut silent_writer = options.connect().await.expect("connection");
    // Ordinary triggers are skipped for this session only: no NOTIFY.
    sqlx::query("set session_replication_role = replica")
        .execute(&mut silent_writer)
        .await
        .expect("set session_replication_role");
    let silent = rooms[1]
        .insert(&mut silent_writer, &common::txid(), "unnotified")
        .await
        .expect("insert");
    drop(silent_writer);
    let before = reconnects(&stats);
    let failed = failures.load(Ordering::SeqCst);
    own.cluster.stop().await.expect("cluster stops");
    let down_at = written.load(Ordering::SeqCst);
    drop(paused);
    wait_until("the writer fails against the stopped server", || {
        failures.load(Ordering::SeqCst) > failed
    })
    .await;
    own.cluster
        .ensure_running()
        .await
        .expect("cluster restarts");
    let restarted_at = started.elapsed();
    wait_until("the listener reconnects after the restart", || {
        reconnects(&stats) > before
    })
    .await;
    await_ready_status(address, 200).await;
    // Joining after the restart needs the query pool to have replaced its
    // broken connections (invoice lookup and snapshot).
    for room in 0..rooms.len() {
        readers.push(spawn_reader(address, &rooms, room, "joined after restart".into()).await);
    }
    let api = reqwest::get(format!("http://{address}/api/invoices/{invoice}"))
        .await
        .expect("GET invoice");
    assert_eq!(
        api.status().as_u16(),
        200,
        "the API's queries work after the restart"
    );

    let mut expected: HashMap<usize, HashSet<i64>> = HashMap::new();
    let mut record = |room: usize, id: i64| {
        assert!(
            expected.entry(room).or_default().insert(id),
            "id {id} twice"
        );
    };
    for (room, id) in writer.await.expect("writer") {
        record(room, id);
    }
    record(1, silent);
    assert!(
        written.load(Ordering::SeqCst) > down_at,
        "the writer went on after the restart"
    );
    let sentinels = insert_sentinels(&pool, &rooms, &failures).await;
    for (room, id) in sentinels.iter().enumerate() {
        record(room, *id);
    }
    let total: usize = expected.values().map(HashSet::len).sum();
    check_readers(readers, &expected, &sentinels).await;
    let counts = stats.counts();
    assert_eq!(
        counts.published, total as u64,
        "the listener published some payment twice or not at all: {counts:?}"
    );

    stop.cancel();
    tokio::time::timeout(WAIT, serving)
        .await
        .expect("paywatch stops in time")
        .expect("server task")
        .expect("paywatch ran cleanly");
    pool.close().await;
    drop(test_database);
    own.cluster.stop().await.expect("cluster stops");
    eprintln!(
        "{total} payments, writer retries {}, restarted at {restarted_at:?}, {counts:?}, {:?}",
        failures.load(Ordering::SeqCst),
        started.elapsed()
    );
}
