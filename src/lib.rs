//! paywatch pushes payments committed to PostgreSQL to browsers over
//! read-only WebSockets.
//!
//! # The flow, one direction only
//! ```text
//! INSERT INTO payments ──trigger──▶ NOTIFY paywatch_payments, '<id>'
//!   listener   parses the payload as an id (untrusted), reloads the row,
//!              its invoice and totals                    (listener, event)
//!   event      the only constructor of a TrustedEvent; rooms come from the
//!              reloaded row; the frame is serialized once  (event, rooms)
//!   hub        queues the event to each subscriber of its rooms; bounded
//!              per-connection queues                      (hub)
//!   ws         joins the room, sends the snapshot, forwards queued events;
//!              client data frames are discarded           (ws, snapshot)
//! ```
//! Nothing flows the other way: no module turns client input into an event.
//!
//! # Where things live
//! - [`app`]: builds the server and runs it until shutdown.
//! - [`config`]: every setting and its default.
//! - [`database`]: finds or starts PostgreSQL, connects, migrates.
//! - [`listener`]: the LISTEN connection, reload, sweep and exactly-once delivery.
//! - [`event`]: [`event::TrustedEvent`] and the reload query that builds it.
//! - [`hub`]: rooms and per-connection queues.
//! - [`ws`]: the read-only WebSocket endpoints.
//! - [`admission`]: connection caps and the Origin allow-list.
//! - [`snapshot`]: the frame sent on connect.
//! - [`api`]: the HTTP JSON API and its errors.
//! - [`metrics`]: `GET /metrics` for Prometheus.
//! - [`invoice`]: invoice and payment rows, totals and status.
//! - [`ids`], [`address`], [`rooms`]: untrusted text parsed into types at the edge.
//! - [`cli`]: the `paywatch` command's helpers (invoice, pay, watch).

pub mod address;
pub mod admission;
pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod cursor;
pub mod database;
pub mod event;
pub mod hub;
pub mod ids;
pub mod invoice;
pub mod listener;
pub mod metrics;
pub mod rooms;
pub mod snapshot;
pub mod ws;

pub use app::App;
pub use config::Config;
