//! The listener: the one LISTEN connection, and the only code that turns
//! database activity into events for the hub.
//!
//! A notification is only a wake-up call. Its payload is untrusted (any role
//! that can connect may NOTIFY any channel with any text) and never used as
//! data: what gets delivered is decided by reading the `payments` table
//! ([`crate::event::Step`]), and rooms and content come from the rows.
//! Payloads are still parsed as payment ids, to count and log (at debug) the
//! malformed ones, the ids that name no payment, and those already delivered.
//!
//! # Exactly once, in commit order, in spite of lost notifications
//! Notifications are not durable, and identity ids are handed out at INSERT,
//! not at COMMIT, so neither "every notification" nor "every id above the last
//! one seen" covers every row. Delivery instead walks PostgreSQL snapshots:
//! each step takes `pg_current_snapshot()` and delivers the payments visible
//! in it that were not visible in the previous step's snapshot. Visibility
//! only grows, so each committed payment is delivered in exactly one step,
//! and a late-committing transaction is delivered when it commits, not
//! skipped. A step runs when notifications arrive, after every reconnect,
//! and every sweep interval, so a lost notification delays a payment by at
//! most one interval. Each event carries a resume cursor built from the two
//! snapshots of its step ([`crate::cursor`]). A long transaction anywhere
//! holds the snapshots' `xmin` back, which makes each step scan more rows,
//! but delays nothing that has committed.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::cursor::PgSnapshot;
use crate::database::LISTENER_APPLICATION_NAME;
use crate::event;
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

/// What the listener did, as Prometheus metrics (see [`crate::metrics`]),
/// also readable directly by tests and logs.
#[derive(Debug)]
pub struct ListenerStats {
    pub(crate) notifications: Counter,
    pub(crate) malformed: Counter,
    pub(crate) unknown: Counter,
    pub(crate) duplicates: Counter,
    pub(crate) published: Counter,
    pub(crate) recovered: Counter,
    pub(crate) reconnects: Counter,
    pub(crate) sweeps: Counter,
    pub(crate) frames_queued: Counter,
    pub(crate) evicted: Counter,
    /// Seconds from a payment's `paid_at` to its frame being queued.
    pub(crate) delay: Histogram,
}

impl Default for ListenerStats {
    fn default() -> Self {
        ListenerStats {
            notifications: Counter::default(),
            malformed: Counter::default(),
            unknown: Counter::default(),
            duplicates: Counter::default(),
            published: Counter::default(),
            recovered: Counter::default(),
            reconnects: Counter::default(),
            sweeps: Counter::default(),
            frames_queued: Counter::default(),
            evicted: Counter::default(),
            // 0.25 ms to about 8 s.
            delay: Histogram::new(exponential_buckets(0.000_25, 2.0, 16)),
        }
    }
}

/// A copy of [`ListenerStats`]' counters at one moment.
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
    /// Of those, events delivered by a catch-up step (timer, reconnect, or a
    /// wake-up that named no payment) ahead of, or without, their notification.
    pub recovered: u64,
    /// Times the LISTEN connection was re-established.
    pub reconnects: u64,
    /// Catch-up steps completed.
    pub sweeps: u64,
    /// Frames queued to subscribers.
    pub frames_queued: u64,
    /// Subscribers dropped because their queue was full.
    pub evicted: u64,
}

impl ListenerStats {
    /// Reads every counter.
    pub fn counts(&self) -> ListenerCounts {
        ListenerCounts {
            notifications: self.notifications.get(),
            malformed: self.malformed.get(),
            unknown: self.unknown.get(),
            duplicates: self.duplicates.get(),
            published: self.published.get(),
            recovered: self.recovered.get(),
            reconnects: self.reconnects.get(),
            sweeps: self.sweeps.get(),
            frames_queued: self.frames_queued.get(),
            evicted: self.evicted.get(),
        }
    }
}

fn bump(counter: &Counter, by: usize) {
    counter.inc_by(by as u64);
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
    /// How often a heartbeat NOTIFY is sent. A LISTEN connection that hears
    /// nothing for three of these is presumed dead and replaced.
    pub heartbeat: Duration,
}

/// What the listener needs.
pub struct Listener {
    /// Pool for reloads and sweeps.
    pub pool: PgPool,
    /// Where the LISTEN connection connects (directly to PostgreSQL, never
    /// through a transaction-mode pooler).
    pub listen_options: PgConnectOptions,
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
/// notifications arrive, take the starting snapshot, then hand notifications to
/// the hub until `shutdown`. Returns once the listener is serving; its tasks
/// are tracked by `tasks`.
pub async fn start(
    parts: Listener,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
) -> Result<(), ListenerError> {
    let Listener {
        pool,
        listen_options,
        hub,
        stats,
        ready,
        config,
    } = parts;
    let mut listener = connect(&listen_options).await?;
    // Payments this snapshot sees committed before LISTEN was in place;
    // clients get them from snapshots. Everything later is delivered.
    let before = event::starting_point(&pool).await?;
    let early = self_test(&pool, &mut listener).await?;
    tracing::info!(channel = CHANNEL, start = %before, "listener connected; NOTIFY self-test passed");
    ready.send_replace(true);

    let (signals, inbox) = mpsc::channel(4 * MAX_BATCH);
    for payload in early {
        // Should more arrive during the self-test than the channel holds, the
        // next step delivers their payments all the same.
        let _ = signals.try_send(Signal::Payload(payload));
    }
    tasks.spawn(heartbeat(pool.clone(), config.heartbeat, shutdown.clone()));
    tasks.spawn(receive(
        Connection {
            listener,
            options: listen_options,
            silence_limit: config.heartbeat * 3,
        },
        signals,
        Arc::clone(&stats),
        ready,
        shutdown.clone(),
    ));
    let delivery = Delivery {
        pool,
        hub,
        stats,
        before,
        unfinished: None,
        unannounced: Unannounced::default(),
    };
    tasks.spawn(delivery.run(inbox, config, shutdown));
    Ok(())
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

/// A LISTEN connection on a pool of its own. A new pool per connection,
/// because a connection presumed dead (half open: no error, just silence)
/// cannot be trusted back into a pool: it would be handed out again.
async fn connect(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_lazy_with(options.clone().application_name(LISTENER_APPLICATION_NAME));
    let mut listener = PgListener::connect_with(&pool).await?;
    // Reconnecting is done by `receive`, which must know that it happened
    // (to catch up and to report readiness); sqlx's own eager reconnect
    // would retry inside try_recv for up to the acquire timeout while
    // /readyz still said ready.
    listener.eager_reconnect(false);
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// Sends a NOTIFY on the channel every `every`, so a healthy LISTEN
/// connection always hears something and a silent one can be told dead.
/// (sqlx sets no TCP keepalive, so a half-open connection raises no error.)
async fn heartbeat(pool: PgPool, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let sent = sqlx::query("select pg_notify($1, 'heartbeat')")
            .bind(CHANNEL)
            .execute(&pool);
        if let Ok(Err(error)) = tokio::time::timeout(every, sent).await {
            tracing::debug!(%error, "heartbeat NOTIFY failed");
        }
    }
}

/// The LISTEN connection and what is needed to replace it.
struct Connection {
    listener: PgListener,
    options: PgConnectOptions,
    /// Silence longer than this means the connection is dead.
    silence_limit: Duration,
}

/// Owns the LISTEN connection. Nothing else awaits it, so it is never
/// cancelled in the middle of reading a message, except when it is being
/// thrown away for silence.
async fn receive(
    mut connection: Connection,
    signals: mpsc::Sender<Signal>,
    stats: Arc<ListenerStats>,
    ready: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    loop {
        let silence = tokio::time::sleep(connection.silence_limit);
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = connection.listener.try_recv() => Some(received),
            _ = silence => None,
        };
        let signal = match received {
            Some(Ok(Some(notification))) => Signal::Payload(notification.payload().to_owned()),
            failure => {
                ready.send_replace(false);
                match failure {
                    Some(Err(error)) => {
                        tracing::warn!(%error, "listener connection down; reconnecting")
                    }
                    Some(Ok(None)) => tracing::warn!("listener connection lost; reconnecting"),
                    _ => tracing::warn!(
                        silence = ?connection.silence_limit,
                        "listener heard nothing, not even its heartbeat; replacing the connection"
                    ),
                }
                // Reconnect here rather than in the next try_recv, which
                // would reconnect silently: delivery must know when
                // notifications flow again, to catch up.
                let Some(listener) = reconnect(&connection.options, &shutdown).await else {
                    return;
                };
                connection.listener = listener;
                ready.send_replace(true);
                bump(&stats.reconnects, 1);
                tracing::info!("listener reconnected; catching up");
                Signal::Reconnected
            }
        };
        if signals.send(signal).await.is_err() {
            return;
        }
    }
}

/// Opens a new LISTEN connection, retrying with exponential backoff, until
/// it succeeds or shutdown (`None`).
async fn reconnect(options: &PgConnectOptions, shutdown: &CancellationToken) -> Option<PgListener> {
    let mut backoff = BACKOFF_MIN;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(backoff) => {}
        }
        match connect(options).await {
            Ok(listener) => return Some(listener),
            Err(error) => {
                tracing::debug!(%error, ?backoff, "listener reconnect failed");
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Turns wake-ups into delivery steps and hands the events to the hub.
struct Delivery {
    pool: PgPool,
    hub: Arc<Hub>,
    stats: Arc<ListenerStats>,
    /// The snapshot of the last completed step: every payment it sees has
    /// been delivered (or predates the listener and is left to snapshots).
    before: PgSnapshot,
    /// A step that failed part way, to finish before starting another.
    unfinished: Option<event::Step>,
    /// Payments delivered before their notification arrived.
    unannounced: Unannounced,
}

/// Payments a step delivered before their notification was read, so the
/// notification, when it comes, is recognised as late rather than counted
/// as a repeat. Bounded: the oldest are forgotten first (a notification that
/// never comes must not cost memory forever).
#[derive(Debug, Default)]
struct Unannounced {
    ids: HashSet<PaymentId>,
    order: VecDeque<PaymentId>,
}

impl Unannounced {
    const CAPACITY: usize = 65_536;

    fn insert(&mut self, id: PaymentId) {
        if self.ids.insert(id) {
            self.order.push_back(id);
        }
        while self.order.len() > Self::CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.ids.remove(&oldest);
            }
        }
    }

    /// Forgets `id`; whether it was there.
    fn take(&mut self, id: &PaymentId) -> bool {
        // Its entry in `order` goes when it reaches the front.
        self.ids.remove(id)
    }
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
                _ = sweep.tick() => self.step_logged(&[], true).await,
                received = inbox.recv_many(&mut batch, MAX_BATCH) => {
                    if received == 0 {
                        return;
                    }
                    let mut reconnected = false;
                    let mut hinted = Vec::with_capacity(batch.len());
                    for signal in batch.drain(..) {
                        match signal {
                            Signal::Payload(payload) => hinted.extend(self.parse(&payload)),
                            Signal::Reconnected => reconnected = true,
                        }
                    }
                    self.step_logged(&hinted, reconnected).await;
                }
            }
        }
    }

    fn parse(&self, payload: &str) -> Option<PaymentId> {
        bump(&self.stats.notifications, 1);
        let id = PaymentId::from_notify_payload(payload);
        if id.is_none() && payload != "heartbeat" && !payload.starts_with("self-test:") {
            bump(&self.stats.malformed, 1);
            tracing::debug!(
                payload_len = payload.len(),
                "dropped notification: payload is not a payment id"
            );
        }
        id
    }

    async fn step_logged(&mut self, hinted: &[PaymentId], catch_up: bool) {
        // A step no payment notification asked for (timer, reconnect,
        // heartbeat, a forged payload) is catch-up too: what it finds, no
        // notification had announced yet.
        let catch_up = catch_up || hinted.is_empty();
        match self.step(hinted, catch_up).await {
            Ok(0) => {}
            Ok(recovered) => tracing::info!(
                recovered,
                "catch-up delivered payments ahead of, or without, their notification"
            ),
            // `before` is unchanged, so the next step delivers these rows.
            Err(error) => tracing::warn!(%error, "delivery step failed; the next step will retry"),
        }
    }

    /// Runs one step. `catch_up` is true for the steps that no notification
    /// triggered (the timer, a reconnect); returns how many payments such a
    /// step delivered that no notification had announced.
    async fn step(&mut self, hinted: &[PaymentId], catch_up: bool) -> Result<usize, sqlx::Error> {
        // A step that failed half way resumes where it stopped, so the pages
        // it already published are not published again.
        let mut step = match self.unfinished.take() {
            Some(step) => step,
            None => event::Step::begin(self.before.clone()),
        };
        let hinted: HashSet<PaymentId> = hinted.iter().copied().collect();
        let mut recovered = 0;
        let mut delivered = HashSet::new();
        // Publishing page by page gives connections time to drain their
        // queues while the next page is read, so one huge commit does not
        // overflow the queue of a client that reads at full speed.
        loop {
            // At most half a queue per page, so a page never fills the queue
            // of a client that had drained the previous one.
            let page = MAX_BATCH.min(self.hub.queue_capacity() / 2).max(1);
            let events = match step.next_page(&self.pool, page as i64).await {
                Ok(events) => events,
                Err(error) => {
                    self.unfinished = Some(step);
                    return Err(error);
                }
            };
            if events.is_empty() {
                break;
            }
            for event in events {
                let id = event.payment_id();
                delivered.insert(id);
                if !hinted.contains(&id) {
                    // Committed, but its notification (if any) is still on
                    // its way: remember it so that notification is not
                    // mistaken for a repeat.
                    self.unannounced.insert(id);
                    if catch_up {
                        recovered += 1;
                    }
                }
                let paid_at = event.paid_at();
                let delivery = self.hub.publish(event);
                let delay = (chrono::Utc::now() - paid_at).to_std().unwrap_or_default();
                self.stats.delay.observe(delay.as_secs_f64());
                bump(&self.stats.frames_queued, delivery.queued);
                bump(&self.stats.evicted, delivery.evicted);
                if delivery.evicted > 0 {
                    tracing::info!(payment_id = %id, evicted = delivery.evicted, "dropped subscribers whose queues were full");
                }
            }
        }
        bump(&self.stats.published, delivered.len());
        bump(&self.stats.recovered, recovered);
        if catch_up {
            bump(&self.stats.sweeps, 1);
        }
        self.before = step.into_snapshot();
        self.classify_leftovers(&hinted, &delivered).await?;
        Ok(recovered)
    }

    /// Counts the notified ids this step did not deliver: already delivered
    /// (a repeated or forged notification), or naming no payment at all.
    async fn classify_leftovers(
        &mut self,
        hinted: &HashSet<PaymentId>,
        delivered: &HashSet<PaymentId>,
    ) -> Result<(), sqlx::Error> {
        let leftovers: HashSet<i64> = hinted
            .iter()
            .filter(|id| !delivered.contains(id) && !self.unannounced.take(id))
            .map(PaymentId::get)
            .collect();
        if leftovers.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = leftovers.into_iter().collect();
        let existing: i64 = sqlx::query_scalar("select count(*) from payments where id = any($1)")
            .bind(&ids)
            .fetch_one(&self.pool)
            .await?;
        let existing = existing as usize;
        bump(&self.stats.duplicates, existing);
        bump(&self.stats.unknown, ids.len() - existing);
        tracing::debug!(
            already_delivered = existing,
            unknown = ids.len() - existing,
            "notifications that delivered nothing"
        );
        Ok(())
    }
}
