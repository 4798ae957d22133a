//! Test harness: a real paywatch bound to 127.0.0.1:0, its own PostgreSQL
//! database (dropped afterwards), real WebSocket clients, and helpers that
//! insert rows the way a merchant's backend would.

#![allow(dead_code)] // each test binary uses a different subset of the helpers

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use paywatch::config::{Config, DatabaseConfig};
use paywatch::database;
use paywatch::hub::Hub;
use paywatch::listener::ListenerStats;
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgPool};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long any single expected thing may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// A CashAddr from the CashAddr specification's test vectors.
pub const ADDRESS: &str = "bitcoincash:qr6m7j9njldwwzlg9v7v53unlr4jkmx6eylep8ekg2";

/// A distinct valid P2PKH address for each `n`.
pub fn address(n: u8) -> String {
    use cashaddr::CashEnc;
    [n; 20].encode_p2pkh("bitcoincash").expect("20-byte hash")
}

/// A CashToken category id.
pub fn token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

/// Database settings every test shares: the server named by DATABASE_URL,
/// else the local default, else the project's private cluster.
pub fn database_config() -> DatabaseConfig {
    DatabaseConfig {
        database_url: None,
        data_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".paywatch"),
        private_pg_port: 54329,
        db_max_connections: 10,
    }
}

/// A database of its own for one test, dropped when the value is.
pub struct TestDatabase {
    /// The server's maintenance database, for admin statements.
    pub server: PgConnectOptions,
    pub name: String,
    pub options: PgConnectOptions,
    pub url: String,
}

impl TestDatabase {
    pub async fn create() -> TestDatabase {
        let _ = dotenvy::dotenv();
        let admin_url = std::env::var("DATABASE_URL").ok();
        let server = database::locate_server(admin_url.as_deref(), &database_config())
            .await
            .expect("a PostgreSQL server for the tests");
        let name = format!("paywatch_test_{}", Uuid::new_v4().simple());
        database::create_database_if_missing(&server, &name)
            .await
            .expect("create test database");
        let options = server.clone().database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = database::connect(&options, 2).await.expect("connect");
        database::migrate(&pool).await.expect("migrate");
        pool.close().await;
        TestDatabase {
            server,
            name,
            options,
            url,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on:
        // drop the database from a thread with a runtime of its own.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok(mut connection) = server.connect().await {
                    let _ = sqlx::query(&format!(
                        "drop database if exists {} with (force)",
                        database::quote_identifier(&name)
                    ))
                    .execute(&mut connection)
                    .await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// A running paywatch and its database.
pub struct TestApp {
    pub address: std::net::SocketAddr,
    /// A pool on the test database, for the test's own inserts.
    pub pool: PgPool,
    pub stats: Arc<ListenerStats>,
    pub hub: Arc<Hub>,
    pub config: Config,
    stop: CancellationToken,
    server: Option<JoinHandle<std::io::Result<()>>>,
    pub database: TestDatabase,
}

/// The configuration tests run with: an ephemeral port and short intervals.
pub fn test_config(database: &TestDatabase) -> Config {
    Config {
        database: DatabaseConfig {
            database_url: Some(database.url.clone()),
            ..database_config()
        },
        listen: "127.0.0.1:0".parse().expect("address"),
        api_token: None,
        max_connections: 10_000,
        max_connections_per_ip: 256,
        allowed_origins: Vec::new(),
        handshake_timeout_s: 10,
        ws_max_frames_per_s: 20,
        ws_max_message_bytes: 1024,
        ws_queue: 1024,
        ws_ping_interval_s: 30,
        ws_write_timeout_s: 10,
        rpc_max_request_bytes: 16 * 1024,
        rpc_max_batch: 20,
        rpc_max_requests_per_s: 20,
        rpc_max_subscriptions: 32,
        address_snapshot_limit: 100,
        resume_max_events: 1000,
        listener_database_url: None,
        // Heartbeats are off in practice: tests that count notifications
        // exactly want none; the watchdog test turns them on.
        listener_heartbeat_s: 3600,
        sweep_interval_ms: 5000,
        shutdown_timeout_s: 5,
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
        let database = TestDatabase::create().await;
        let mut config = test_config(&database);
        adjust(&mut config);
        let app = paywatch::App::build(config.clone())
            .await
            .expect("paywatch starts");
        let address = app.local_addr();
        let stats = app.listener_stats();
        let hub = app.hub();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let server = tokio::spawn(app.run_until_stopped(async move { stopped.cancelled().await }));
        let pool = database::connect(&database.options, 5)
            .await
            .expect("test pool");
        TestApp {
            address,
            pool,
            stats,
            hub,
            config,
            stop,
            server: Some(server),
            database,
        }
    }

    /// Stops the server and waits for it to finish.
    pub async fn stop(&mut self) {
        self.stop.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server ran cleanly");
        }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.address, path)
    }

    /// Opens a WebSocket to `path` and returns it with its snapshot frame.
    pub async fn connect(&self, path: &str) -> (Client, Value) {
        let mut client = self.try_connect(path).await.expect("upgrade accepted");
        let snapshot = client.next_json().await;
        assert_eq!(snapshot["type"], "snapshot", "first frame is the snapshot");
        (client, snapshot)
    }

    /// Opens a WebSocket to `path`; the HTTP status if the upgrade is refused.
    pub async fn try_connect(&self, path: &str) -> Result<Client, u16> {
        match tokio_tungstenite::connect_async(self.ws_url(path)).await {
            Ok((socket, _)) => Ok(Client { socket }),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                Err(response.status().as_u16())
            }
            Err(other) => panic!("connecting to {path}: {other}"),
        }
    }

    pub async fn invoice_client(&self, invoice: Uuid) -> (Client, Value) {
        self.connect(&format!("/ws/jpp/invoice/{}/", invoice.simple()))
            .await
    }

    pub async fn address_client(&self, address: &str) -> (Client, Value) {
        self.connect(&format!("/ws/watch/address/{address}/")).await
    }

    /// `INSERT INTO invoices (amount_sats) VALUES ($1) RETURNING id`.
    pub async fn create_invoice(&self, amount_sats: i64) -> Uuid {
        sqlx::query_scalar("INSERT INTO invoices (amount_sats) VALUES ($1) RETURNING id")
            .bind(amount_sats)
            .fetch_one(&self.pool)
            .await
            .expect("insert invoice")
    }

    /// `INSERT INTO payments (invoice_id, txid, amount_sats) VALUES ($1,$2,$3)`.
    pub async fn pay_invoice(&self, invoice: Uuid, amount_sats: i64) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO payments (invoice_id, txid, amount_sats) VALUES ($1,$2,$3) RETURNING id",
        )
        .bind(invoice)
        .bind(txid())
        .bind(amount_sats)
        .fetch_one(&self.pool)
        .await
        .expect("insert payment")
    }

    /// `INSERT INTO payments (address, txid, amount_sats) VALUES ($1,$2,$3)`.
    pub async fn pay_address(&self, address: &str, amount_sats: i64) -> i64 {
        sqlx::query_scalar(
            "INSERT INTO payments (address, txid, amount_sats) VALUES ($1,$2,$3) RETURNING id",
        )
        .bind(address)
        .bind(txid())
        .bind(amount_sats)
        .fetch_one(&self.pool)
        .await
        .expect("insert payment")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A random transaction id.
pub fn txid() -> String {
    paywatch::ids::Txid::random().as_str().to_owned()
}

/// A real WebSocket client.
pub struct Client {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// The next text frame as JSON; fails the test after [`WAIT`] or on close.
    pub async fn next_json(&mut self) -> Value {
        loop {
            match self.next_message().await {
                Message::Text(text) => {
                    return serde_json::from_str(&text).expect("frames are JSON");
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next message of any kind; fails the test after [`WAIT`].
    pub async fn next_message(&mut self) -> Message {
        match tokio::time::timeout(WAIT, self.socket.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(Some(Err(error))) => panic!("websocket error: {error}"),
            Ok(None) => panic!("websocket ended"),
            Err(_) => panic!("no frame within {WAIT:?}"),
        }
    }

    /// The next `payment_received` event.
    pub async fn next_event(&mut self) -> Value {
        let frame = self.next_json().await;
        assert_eq!(frame["type"], "payment_received", "frame: {frame}");
        frame
    }

    /// Sends a ping and waits for its pong. The server reads frames in order,
    /// so once the pong is back, every frame sent before the ping has been
    /// read and handled by the server.
    pub async fn round_trip(&mut self) {
        let token = Uuid::new_v4().as_bytes().to_vec();
        self.socket
            .send(Message::Ping(token.clone().into()))
            .await
            .expect("send ping");
        loop {
            match self.next_message().await {
                Message::Pong(payload) if payload.as_ref() == token.as_slice() => return,
                Message::Pong(_) | Message::Ping(_) => continue,
                other => panic!("expected the pong, got {other:?}"),
            }
        }
    }

    /// Waits for the close frame and returns its code.
    pub async fn close_code(&mut self) -> u16 {
        loop {
            match tokio::time::timeout(WAIT, self.socket.next()).await {
                Ok(Some(Ok(Message::Close(Some(frame))))) => return frame.code.into(),
                Ok(Some(Ok(Message::Close(None)))) => panic!("close without a code"),
                Ok(Some(Ok(_))) => continue,
                Ok(Some(Err(error))) => panic!("websocket error before close: {error}"),
                Ok(None) => panic!("websocket ended without a close frame"),
                Err(_) => panic!("no close within {WAIT:?}"),
            }
        }
    }
}
