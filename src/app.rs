//! The server as a value: [`App::build`] connects, migrates when it owns the
//! set-up, starts the listener and binds the port; [`App::run_until_stopped`]
//! serves until the shutdown future completes. Tests bind 127.0.0.1:0 and run
//! the real thing.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::routing::get;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use sqlx::PgPool;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;
use tower_service::Service;

use crate::admission::Admission;
use crate::config::Config;
use crate::database::{self, DatabaseError};
use crate::hub::Hub;
use crate::listener::{self, ListenerConfig, ListenerError, ListenerStats};
use crate::metrics::Metrics;
use crate::{api, page, rpc, ws};

/// What request handlers share.
#[derive(Clone)]
pub struct AppState {
    pub(crate) pool: PgPool,
    pub(crate) hub: Arc<Hub>,
    pub(crate) admission: Arc<Admission>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) config: Arc<Config>,
    pub(crate) listener_ready: watch::Receiver<bool>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be reached or prepared.
    #[error(transparent)]
    Database(#[from] DatabaseError),
    /// The listener could not start.
    #[error(transparent)]
    Listener(#[from] ListenerError),
    /// The port could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// A built, bound, not yet serving paywatch.
pub struct App {
    listener: TcpListener,
    state: AppState,
    stats: Arc<ListenerStats>,
}

impl App {
    /// Connects to the database, starts the listener and binds
    /// `config.listen` (port 0 picks a free port).
    pub async fn build(config: Config) -> Result<App, StartError> {
        let located = database::locate(&config.database).await?;
        tracing::info!(database = %database::redacted(&located.options), "connecting");
        let pool = database::connect(&located.options, config.database.db_max_connections).await?;
        if located.zero_config {
            database::migrate(&pool).await?;
        } else {
            database::check_schema(&pool).await?;
        }
        let listen_options = match &config.listener_database_url {
            Some(url) => url
                .parse()
                .map_err(|e| StartError::Database(DatabaseError::BadUrl(e)))?,
            None => located.options.clone(),
        };

        let hub = Hub::new(config.ws_queue);
        let stats = Arc::new(ListenerStats::default());
        let (ready_tx, listener_ready) = watch::channel(false);
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        listener::start(
            listener::Listener {
                pool: pool.clone(),
                listen_options,
                hub: Arc::clone(&hub),
                stats: Arc::clone(&stats),
                ready: ready_tx,
                config: ListenerConfig {
                    sweep_interval: config.sweep_interval(),
                    heartbeat: config.listener_heartbeat(),
                },
            },
            &tasks,
            shutdown.clone(),
        )
        .await?;

        let listener = bind(config.listen).map_err(|e| StartError::Bind(config.listen, e))?;
        Ok(App {
            listener,
            state: AppState {
                pool,
                hub,
                metrics: Arc::new(Metrics::new(&stats)),
                admission: Admission::new(
                    config.max_connections,
                    config.max_connections_per_ip,
                    config.allowed_origins.clone(),
                ),
                config: Arc::new(config),
                listener_ready,
                shutdown,
                tasks,
            },
            stats,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        // A bound TcpListener always has a local address.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.config.listen)
    }

    /// The listener's counters.
    pub fn listener_stats(&self) -> Arc<ListenerStats> {
        Arc::clone(&self.stats)
    }

    /// The room registry.
    pub fn hub(&self) -> Arc<Hub> {
        Arc::clone(&self.state.hub)
    }

    /// Serves until `shutdown` completes, then stops accepting, closes every
    /// WebSocket with 1001, and waits (at most the configured grace period)
    /// for every task to finish.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state;
        let token = state.shutdown.clone();
        let tasks = state.tasks.clone();
        let grace = state.config.shutdown_timeout();
        let handshake_timeout = state.config.handshake_timeout();
        let router = router(state);
        tracing::info!(address = %self.listener.local_addr()?, "serving");
        let stop = token.clone();
        let stopper = tokio::spawn(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = stop.cancelled() => {}
            }
            tracing::info!("shutting down");
            stop.cancel();
        });
        serve_http(self.listener, router, handshake_timeout, grace, &token).await;
        stopper.abort();
        token.cancel();
        tasks.close();
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!(
                ?grace,
                "some tasks did not finish within the shutdown grace period"
            );
        }
        Ok(())
    }
}

/// Pending connections the kernel may queue before paywatch accepts them.
/// tokio's default (1024) overflows when thousands of clients reconnect at
/// once, and each overflowed SYN is retried only after a second. The kernel
/// caps it at `net.core.somaxconn`.
const LISTEN_BACKLOG: u32 = 8192;

fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections until `stop`, then lets open HTTP exchanges finish.
///
/// Hand-rolled rather than `axum::serve` for one setting that it does not
/// expose: a deadline on reading a request's headers, so a client that
/// opens connections and never finishes its upgrade request (slowloris)
/// holds nothing for long.
async fn serve_http(
    listener: TcpListener,
    router: Router,
    handshake_timeout: Duration,
    grace: Duration,
    stop: &CancellationToken,
) {
    // HTTP/1.1 only: browsers open WebSockets over it, and hyper's
    // protocol auto-detection would wait for a first byte with no deadline.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(handshake_timeout);
    let exchanges = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Running out of file descriptors, for one: back off
                    // instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Frames are written whole and flushed at once; Nagle's algorithm
        // would only hold a frame back until the previous one is acked.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %peer, "could not set TCP_NODELAY");
        }
        let router = router.clone();
        let service = service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            // A Router is always ready, so it may be called without
            // poll_ready.
            router.clone().call(request)
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let stop = stop.clone();
        exchanges.spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stop.cancelled() => {
                    // Finish the exchange under way, then close.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, %peer, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    // WebSocket connections have been upgraded away from hyper and are
    // closed by the shutdown token; this waits for plain HTTP exchanges.
    exchanges.close();
    if tokio::time::timeout(grace, exchanges.wait()).await.is_err() {
        tracing::warn!(
            ?grace,
            "some HTTP exchanges did not finish within the shutdown grace period"
        );
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/api/invoices", axum::routing::post(api::create_invoice))
        .route("/api/invoices/{id}", get(api::get_invoice))
        .route("/invoice/{id}", get(page::invoice_page))
        .route("/invoice/{id}/", get(page::invoice_page))
        .route("/static/page.js", get(page::page_js))
        .route("/static/page.css", get(page::page_css))
        .route("/ws/jpp/invoice/{id}", get(ws::invoice_room))
        .route("/ws/jpp/invoice/{id}/", get(ws::invoice_room))
        .route("/ws/watch/address/{address}", get(ws::address_room))
        .route("/ws/watch/address/{address}/", get(ws::address_room))
        .route(
            "/ws/watch/address/{address}/{token_id}",
            get(ws::address_token_room),
        )
        .route(
            "/ws/watch/address/{address}/{token_id}/",
            get(ws::address_token_room),
        )
        .route("/ws/rpc", get(rpc::endpoint))
        .route("/ws/watch/bch/{address}", get(ws::address_room))
        .route("/ws/watch/bch/{address}/", get(ws::address_room))
        .fallback(api::not_found)
        // One span per request (method and path), which a WebSocket
        // connection's own `ws` span then nests in.
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
