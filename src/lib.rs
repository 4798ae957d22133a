//! paywatch pushes payments committed to PostgreSQL to browsers over
//! read-only WebSockets.
//!
//! # The flow, one direction only
//! ```text
//! INSERT INTO payments ──trigger──▶ NOTIFY paywatch_payments, '<id>'
//!   listener   a notification is only a wake-up (its payload is untrusted);
//!              each wake-up is a step: take a PostgreSQL snapshot, read the
//!              payments it sees that the last step did not    (listener)
//!   event      the only constructor of a TrustedEvent: rooms and content
//!              come from the rows; frame and resume cursor serialized once
//!                                                         (event, rooms, cursor)
//!   hub        queues the event to each subscriber of its rooms; bounded
//!              per-connection queues                      (hub)
//!   ws         admits, joins the room, sends the snapshot or the backlog
//!              after a cursor, forwards queued events; client data frames
//!              are discarded                  (admission, ws, snapshot)
//! ```
//! Nothing flows the other way: no module turns client input into an event.
//!
//! # Where things live
//! - [`app`]: builds the server and runs it until shutdown.
//! - [`config`]: every setting and its default.
//! - [`database`]: finds or starts PostgreSQL, connects, migrates.
//! - [`listener`]: the LISTEN connection, heartbeat, and exactly-once delivery in snapshot steps.
//! - [`event`]: [`event::TrustedEvent`] and the queries that build it (steps, backlogs).
//! - [`cursor`]: resume cursors and the PostgreSQL snapshots they are made of.
//! - [`hub`]: rooms and per-connection queues.
//! - [`ws`]: the read-only WebSocket endpoints.
//! - [`rpc`]: JSON-RPC 2.0 at `/ws/rpc`: answers the caller, subscribes, never publishes.
//! - [`admission`]: connection caps and the Origin allow-list.
//! - [`snapshot`]: the frame sent on connect.
//! - [`api`]: the HTTP JSON API and its errors.
//! - [`page`]: the invoice page (`/invoice/{id}`), its script and style sheet.
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
pub mod page;
pub mod rooms;
pub mod rpc;
pub mod snapshot;
pub mod ws;

pub use app::App;
pub use config::Config;
