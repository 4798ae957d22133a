//! Settings, from the command line, the environment or `.env`. Every setting
//! here is listed with its default in `.env.example` and the README.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where the database is.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseConfig {
    /// PostgreSQL URL. Unset: postgres://postgres@127.0.0.1:5432/paywatch,
    /// created and migrated if missing, or a private cluster under
    /// PAYWATCH_DATA_DIR when no server answers there.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Folder for the private PostgreSQL cluster (zero-config only).
    #[arg(long, env = "PAYWATCH_DATA_DIR", default_value = ".paywatch")]
    pub data_dir: PathBuf,

    /// Port of the private PostgreSQL cluster (zero-config only).
    #[arg(long, env = "PAYWATCH_PRIVATE_PG_PORT", default_value_t = 54329)]
    pub private_pg_port: u16,

    /// Most connections in the query pool (snapshots, reloads, API). The
    /// listener holds one more of its own.
    #[arg(long, env = "PAYWATCH_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
}

/// Settings of `paywatch serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Database settings.
    #[command(flatten)]
    pub database: DatabaseConfig,

    /// Address and port to serve HTTP and WebSockets on.
    #[arg(long, env = "PAYWATCH_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Bearer token for POST /api/invoices. Unset: invoice creation over HTTP
    /// is disabled (403).
    #[arg(long, env = "PAYWATCH_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,

    /// Most WebSocket connections open at once (more: HTTP 503 before upgrade).
    #[arg(long, env = "PAYWATCH_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Most WebSocket connections open at once from one client IP (more:
    /// HTTP 429). Behind a reverse proxy every client has the proxy's IP.
    #[arg(long, env = "PAYWATCH_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// Browser origins allowed to open WebSockets, comma-separated (e.g.
    /// `https://shop.example`). Empty: any origin. Requests without an Origin
    /// header (non-browser clients) are always allowed.
    #[arg(
        long,
        env = "PAYWATCH_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub allowed_origins: Vec<String>,

    /// Seconds a client has to send a complete HTTP request head (including
    /// a WebSocket upgrade request) after connecting or between requests.
    #[arg(long, env = "PAYWATCH_HANDSHAKE_TIMEOUT_S", default_value_t = 10)]
    pub handshake_timeout_s: u64,

    /// Most frames a WebSocket client may send per second (more: close 1008).
    #[arg(long, env = "PAYWATCH_WS_MAX_FRAMES_PER_S", default_value_t = 20)]
    pub ws_max_frames_per_s: u32,

    /// Largest message a WebSocket client may send, in bytes (larger: close 1009).
    #[arg(long, env = "PAYWATCH_WS_MAX_MESSAGE_BYTES", default_value_t = 1024)]
    pub ws_max_message_bytes: usize,

    /// Events queued per connection before a client that does not read is
    /// closed with 4000. Keep it above the listener's reload batch (512
    /// events), or one large commit can fill the queue of a client that is
    /// reading at full speed.
    #[arg(long, env = "PAYWATCH_WS_QUEUE", default_value_t = 1024)]
    pub ws_queue: usize,

    /// Seconds between pings; a peer silent for a whole interval is dropped.
    #[arg(long, env = "PAYWATCH_WS_PING_INTERVAL_S", default_value_t = 30)]
    pub ws_ping_interval_s: u64,

    /// Seconds a single frame write may take before the peer is dropped.
    #[arg(long, env = "PAYWATCH_WS_WRITE_TIMEOUT_S", default_value_t = 10)]
    pub ws_write_timeout_s: u64,

    /// Most missed events a client resuming with `?after=` is sent; further
    /// behind, it gets a fresh snapshot instead.
    #[arg(long, env = "PAYWATCH_RESUME_MAX_EVENTS", default_value_t = 1000)]
    pub resume_max_events: i64,

    /// Largest JSON-RPC request (one frame, batch included) on /ws/rpc, in
    /// bytes; larger gets error -32600 (four times larger: close 1009).
    #[arg(long, env = "PAYWATCH_RPC_MAX_REQUEST_BYTES", default_value_t = 16 * 1024)]
    pub rpc_max_request_bytes: usize,

    /// Most requests in one JSON-RPC batch (more: error -32600).
    #[arg(long, env = "PAYWATCH_RPC_MAX_BATCH", default_value_t = 20)]
    pub rpc_max_batch: usize,

    /// JSON-RPC requests per second per connection (more: error -32000;
    /// frames beyond four times this close the connection with 1008).
    #[arg(long, env = "PAYWATCH_RPC_MAX_REQUESTS_PER_S", default_value_t = 20)]
    pub rpc_max_requests_per_s: u32,

    /// Subscriptions per JSON-RPC connection (more: error -32001).
    #[arg(long, env = "PAYWATCH_RPC_MAX_SUBSCRIPTIONS", default_value_t = 32)]
    pub rpc_max_subscriptions: usize,

    /// Most recent payments in an address room's snapshot.
    #[arg(long, env = "PAYWATCH_ADDRESS_SNAPSHOT_LIMIT", default_value_t = 100)]
    pub address_snapshot_limit: i64,

    /// PostgreSQL URL for the LISTEN connection, when DATABASE_URL goes
    /// through a transaction-mode pooler (which breaks LISTEN). Unset: the
    /// same database as the query pool.
    #[arg(long, env = "PAYWATCH_LISTENER_DATABASE_URL", hide_env_values = true)]
    pub listener_database_url: Option<String>,

    /// Seconds between heartbeat NOTIFYs; a LISTEN connection silent for
    /// three of them is replaced (it may be half open).
    #[arg(long, env = "PAYWATCH_LISTENER_HEARTBEAT_S", default_value_t = 10)]
    pub listener_heartbeat_s: u64,

    /// Milliseconds between safety sweeps that deliver payments whose
    /// notification was lost.
    #[arg(long, env = "PAYWATCH_SWEEP_INTERVAL_MS", default_value_t = 5000)]
    pub sweep_interval_ms: u64,

    /// Seconds to wait for connections to close on shutdown.
    #[arg(long, env = "PAYWATCH_SHUTDOWN_TIMEOUT_S", default_value_t = 10)]
    pub shutdown_timeout_s: u64,
}

impl Config {
    /// The ping interval.
    pub fn ws_ping_interval(&self) -> Duration {
        Duration::from_secs(self.ws_ping_interval_s.max(1))
    }

    /// The write timeout.
    pub fn ws_write_timeout(&self) -> Duration {
        Duration::from_secs(self.ws_write_timeout_s.max(1))
    }

    /// The request-head deadline.
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout_s.max(1))
    }

    /// The listener heartbeat interval.
    pub fn listener_heartbeat(&self) -> Duration {
        Duration::from_secs(self.listener_heartbeat_s.max(1))
    }

    /// The sweep interval.
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_millis(self.sweep_interval_ms.max(10))
    }

    /// The shutdown grace period.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_s)
    }
}
