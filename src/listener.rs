//! The listener: the one LISTEN connection, and the only code that turns
//! database activity into events for the hub.
//!
//! A notification's payload is untrusted (any role that can connect may
//! NOTIFY any channel with any text). It is parsed as a payment id and used
//! only as a hint of which row to reload; rooms and content come from the
//! reloaded row ([`crate::event::reload`]). Malformed payloads, ids that name
//! no committed row, and payments already delivered are dropped, logged at
//! debug and counted.
//!
//! # Exactly once, in spite of lost notifications
//! Notifications are not durable, and identity ids are handed out at INSERT,
//! not at COMMIT, so neither "every notification" nor "every id above the last
//! one seen" covers every row. The listener keeps a commit-safe watermark
//! instead: `horizon`, a transaction id such that every payment inserted by a
//! transaction below it has been handled (delivered, or committed before the
//! listener started and so left to snapshots). A sweep, run periodically and
//! after every reconnect, first reads `pg_snapshot_xmin(pg_current_snapshot())`
//! (every transaction below it has finished, committed or not), then delivers
//! the committed payments with `xid >= horizon` not yet delivered, and moves
//! `horizon` up to that `xmin`. Payments at or above `horizon` that were
//! delivered (by either path) are remembered by id until the horizon passes
//! them, so neither path delivers a payment twice. A long transaction
//! anywhere holds `xmin` back: that makes sweeps re-read more rows and keeps
//! more ids in memory, but delays no committed row and never loses one.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::event::{self, TrustedEvent};
use crate::hub::Hub;
use crate::ids::PaymentId;

/// The NOTIFY channel the `payments_notify` trigger uses.
pub const CHANNEL: &str = "paywatch_payments";

/// Most notifications reloaded with one query.
const MAX_BATCH: usize = 512;
/// How long the start-up NOTIFY round trip may take.
const SELF_TEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The database refused or failed a query.
    #[error("listener database error: {0}")]
    Database(#[from] sqlx::Error),
    /// LISTEN was accepted but the start-up NOTIFY never came back.
    #[error(
        "LISTEN does not receive notifications on this connection (no reply to a test NOTIFY within {0:?}); \
         is a transaction-mode pooler such as PgBouncer between paywatch and PostgreSQL? \
         The listener must connect to PostgreSQL directly"
    )]
    SelfTestFailed(Duration),
}

/// Counters of what the listener did, for tests, logs and metrics.
#[derive(Debug, Default)]
pub struct ListenerStats {
    notifications: AtomicU64,
    malformed: AtomicU64,
    unknown: AtomicU64,
    duplicates: AtomicU64,
    published: AtomicU64,
    recovered: AtomicU64,
    reconnects: AtomicU64,
    sweeps: AtomicU64,
}

/// A copy of [`ListenerStats`] at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ListenerCounts {
    /// Notifications received on the channel.
    pub notifications: u64,
    /// Payloads that were not a payment id.
    pub malformed: u64,
    /// Ids that named no committed payment.
    pub unknown: u64,
    /// Payments already delivered (a repeated or forged notification).
    pub duplicates: u64,
    /// Events handed to the hub.
    pub published: u64,
    /// Of those, events found by a sweep rather than a notification.
    pub recovered: u64,
    /// Times the LISTEN connection was re-established.
    pub reconnects: u64,
    /// Sweeps completed.
    pub sweeps: u64,
}

impl ListenerStats {
    /// Reads every counter.
    pub fn counts(&self) -> ListenerCounts {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ListenerCounts {
            notifications: read(&self.notifications),
            malformed: read(&self.malformed),
            unknown: read(&self.unknown),
            duplicates: read(&self.duplicates),
            published: read(&self.published),
            recovered: read(&self.recovered),
            reconnects: read(&self.reconnects),
            sweeps: read(&self.sweeps),
        }
    }
}

fn bump(counter: &AtomicU64, by: usize) {
    counter.fetch_add(by as u64, Ordering::Relaxed);
}

/// What the connection task tells the delivery loop.
enum Signal {
    /// A notification payload.
    Payload(String),
    /// The connection was lost and LISTEN is in place again: anything
    /// committed meanwhile was not notified and must be swept.
    Reconnected,
}

/// Settings of the listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// How often the safety sweep runs without a reconnect.
    pub sweep_interval: Duration,
}

/// What the listener needs.
pub struct Listener {
    /// Pool for reloads and sweeps.
    pub pool: PgPool,
    /// A pool of one connection reserved for LISTEN (so that connection can
    /// carry its own `application_name`).
    pub listen_pool: PgPool,
    /// Where events go.
    pub hub: Arc<Hub>,
    /// Counters to update.
    pub stats: Arc<ListenerStats>,
    /// Set to true while the LISTEN connection is up.
    pub ready: watch::Sender<bool>,
    /// Settings.
    pub config: ListenerConfig,
}

/// Starts the listener: LISTEN, prove with a NOTIFY round trip that
/// notifications arrive, fix the starting horizon, then hand notifications to
/// the hub until `shutdown`. Returns once the listener is serving; its tasks
/// are tracked by `tasks`.
pub async fn start(
    parts: Listener,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<(), ListenerError> {
    let Listener {
        pool,
        listen_pool,
        hub,
        stats,
        ready,
        config,
    } = parts;
    let mut listener = PgListener::connect_with(&listen_pool).await?;
    listener.listen(CHANNEL).await?;
    let horizon = current_xmin(&pool).await?;
    let early = self_test(&pool, &mut listener).await?;
    tracing::info!(
        channel = CHANNEL,
        horizon,
        "listener connected; NOTIFY self-test passed"
    );
    ready.send_replace(true);

    let (signals, inbox) = mpsc::channel(4 * MAX_BATCH);
    for payload in early {
        // Should more arrive during the self-test than the channel holds, the
        // payments they name are above the horizon and the sweep delivers them.
        let _ = signals.try_send(Signal::Payload(payload));
    }
    tasks.spawn(receive(
        listener,
        signals,
        Arc::clone(&stats),
        ready,
        shutdown.clone(),
    ));
    let delivery = Delivery {
        pool,
        hub,
        stats,
        horizon,
        delivered: HashMap::new(),
    };
    tasks.spawn(delivery.run(inbox, config, shutdown));
    Ok(())
}

async fn current_xmin(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let xmin: i64 =
        sqlx::query_scalar("select pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            .fetch_one(pool)
            .await?;
    Ok(xmin as u64)
}

/// Sends a NOTIFY with a random payload from the ordinary pool and waits for it
/// on the LISTEN connection. Returns the payloads that arrived first (real
/// payments committed meanwhile), to be handled like any other.
async fn self_test(pool: &PgPool, listener: &mut PgListener) -> Result<Vec<String>, ListenerError> {
    let nonce = format!("self-test:{}", Uuid::new_v4());
    sqlx::query("select pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(&nonce)
        .execute(pool)
        .await?;
    let mut early = Vec::new();
    let wait = async {
        loop {
            let notification = listener.recv().await?;
            if notification.payload() == nonce {
                return Ok::<_, sqlx::Error>(());
            }
            early.push(notification.payload().to_owned());
        }
    };
    match tokio::time::timeout(SELF_TEST_TIMEOUT, wait).await {
        Ok(result) => result?,
        Err(_) => return Err(ListenerError::SelfTestFailed(SELF_TEST_TIMEOUT)),
    }
    Ok(early)
}

/// Owns the LISTEN connection. Nothing else awaits it, so it is never
/// cancelled in the middle of reading a message.
async fn receive(
    mut listener: PgListener,
    signals: mpsc::Sender<Signal>,
    stats: Arc<ListenerStats>,
    ready: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = listener.try_recv() => received,
        };
        let signal = match received {
            Ok(Some(notification)) => Signal::Payload(notification.payload().to_owned()),
            Ok(None) => {
                // sqlx has already reconnected and re-issued LISTEN (eager
                // reconnect); notifications sent while it was down are gone.
                bump(&stats.reconnects, 1);
                tracing::warn!(
                    "listener connection lost and re-established; sweeping for missed payments"
                );
                Signal::Reconnected
            }
            Err(error) => {
                ready.send_replace(false);
                tracing::warn!(%error, "listener connection down; reconnecting");
                // Reconnect here rather than in the next try_recv, which
                // would reconnect silently: the sweep must know when
                // notifications flow again.
                if !relisten(&mut listener, &shutdown).await {
                    return;
                }
                ready.send_replace(true);
                bump(&stats.reconnects, 1);
                tracing::info!("listener reconnected; sweeping for missed payments");
                Signal::Reconnected
            }
        };
        if signals.send(signal).await.is_err() {
            return;
        }
    }
}

/// Retries LISTEN with exponential backoff until it succeeds (true) or
/// shutdown (false). LISTEN opens a new connection when there is none.
async fn relisten(listener: &mut PgListener, shutdown: &CancellationToken) -> bool {
    let mut backoff = BACKOFF_MIN;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => {}
        }
        match listener.listen(CHANNEL).await {
            Ok(()) => return true,
            Err(error) => {
                tracing::debug!(%error, ?backoff, "listener reconnect failed");
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Turns payloads into trusted events and hands them to the hub.
struct Delivery {
    pool: PgPool,
    hub: Arc<Hub>,
    stats: Arc<ListenerStats>,
    /// Every payment whose `xid` is below this has been handled.
    horizon: u64,
    /// Payments at or above the horizon already delivered: id to xid.
    delivered: HashMap<PaymentId, u64>,
}

impl Delivery {
    async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Signal>,
        config: ListenerConfig,
        shutdown: CancellationToken,
    ) {
        let mut sweep = tokio::time::interval(config.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = sweep.tick() => self.sweep_logged().await,
                received = inbox.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        return;
                    }
                    let mut reconnected = false;
                    let mut ids = Vec::with_capacity(batch.len());
                    for signal in batch.drain(..) {
                        match signal {
                            Signal::Payload(payload) => ids.extend(self.parse(&payload)),
                            Signal::Reconnected => reconnected = true,
                        }
                    }
                    if let Err(error) = self.deliver_notified(&ids).await {
                        // The rows are still in the table: the next sweep
                        // delivers them.
                        tracing::warn!(%error, count = ids.len(), "reload failed; the next sweep will retry");
                    }
                    if reconnected {
                        self.sweep_logged().await;
                    }
                }
            }
        }
    }

    fn parse(&self, payload: &str) -> Option<PaymentId> {
        bump(&self.stats.notifications, 1);
        let id = PaymentId::from_notify_payload(payload);
        if id.is_none() && !payload.starts_with("self-test:") {
            bump(&self.stats.malformed, 1);
            tracing::debug!(
                payload_len = payload.len(),
                "dropped notification: payload is not a payment id"
            );
        }
        id
    }

    async fn deliver_notified(&mut self, ids: &[PaymentId]) -> Result<(), sqlx::Error> {
        if ids.is_empty() {
            return Ok(());
        }
        let events = event::reload(&self.pool, ids).await?;
        let unknown = ids.len() - events.len();
        if unknown > 0 {
            bump(&self.stats.unknown, unknown);
            tracing::debug!(unknown, "dropped notifications naming no committed payment");
        }
        for event in events {
            self.publish_once(event);
        }
        Ok(())
    }

    /// Publishes unless the payment was handled before. Returns whether it
    /// was published.
    fn publish_once(&mut self, event: TrustedEvent) -> bool {
        let id = event.payment_id();
        if event.xid() < self.horizon || self.delivered.contains_key(&id) {
            bump(&self.stats.duplicates, 1);
            tracing::debug!(payment_id = %id, "dropped notification: payment already delivered");
            return false;
        }
        self.delivered.insert(id, event.xid());
        let delivery = self.hub.publish(event);
        bump(&self.stats.published, 1);
        if delivery.evicted > 0 {
            tracing::info!(payment_id = %id, evicted = delivery.evicted, "dropped subscribers whose queues were full");
        }
        true
    }

    async fn sweep_logged(&mut self) {
        match self.sweep().await {
            Ok(0) => {}
            Ok(recovered) => {
                tracing::info!(
                    recovered,
                    horizon = self.horizon,
                    "sweep delivered payments that had no notification"
                )
            }
            Err(error) => tracing::warn!(%error, "sweep failed; it will run again"),
        }
    }

    /// Delivers every committed payment at or above the horizon that was not
    /// delivered yet, then advances the horizon to the xmin read first: every
    /// transaction below it had finished before the query ran, so every row
    /// it wrote was visible to the query.
    async fn sweep(&mut self) -> Result<usize, sqlx::Error> {
        let xmin = current_xmin(&self.pool).await?;
        // Rows above xmin that are already committed are delivered now too,
        // rather than when xmin passes them: a long transaction elsewhere then
        // delays nothing that has committed.
        let ids: Vec<i64> = sqlx::query_scalar(
            "select id from payments where xid >= $1::text::xid8 order by xid, id",
        )
        .bind(self.horizon.to_string())
        .fetch_all(&self.pool)
        .await?;
        let missing: Vec<PaymentId> = ids
            .into_iter()
            .map(PaymentId::from)
            .filter(|id| !self.delivered.contains_key(id))
            .collect();
        let mut recovered = 0;
        for chunk in missing.chunks(MAX_BATCH) {
            for event in event::reload(&self.pool, chunk).await? {
                if self.publish_once(event) {
                    recovered += 1;
                }
            }
        }
        bump(&self.stats.recovered, recovered);
        self.horizon = self.horizon.max(xmin);
        let horizon = self.horizon;
        self.delivered.retain(|_, xid| *xid >= horizon);
        bump(&self.stats.sweeps, 1);
        Ok(recovered)
    }
}
