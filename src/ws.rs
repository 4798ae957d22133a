//! The read-only WebSocket endpoints: invoice rooms and address rooms.
//!
//! This module never publishes. It joins a connection to its room, sends the
//! snapshot, then forwards the [`TrustedEvent`]s the hub queues for it. The
//! client's data frames are read (so that pings are answered and the socket is
//! drained) and discarded unparsed: there is no path from a client frame to a
//! room, and [`crate::hub::Hub::publish`] only accepts events that
//! [`crate::event`] built from database rows.
//!
//! Close codes: 1000 normal, 1001 server shutting down, 1002 protocol
//! error, 1007 invalid UTF-8 in a text frame, 1008 too many frames per
//! second, 1009 client message too big, 1011 server error (snapshot failed),
//! 4000 client too slow (its queue filled up; reconnect to resync).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use futures_util::{FutureExt, SinkExt};
use serde::Deserialize;
use tracing::Instrument;

use crate::address::CashAddr;
use crate::admission::Ticket;
use crate::api::{ApiError, parse_invoice_id};
use crate::app::AppState;
use crate::cursor::{Cursor, PgSnapshot};
use crate::event::{self, Backlog, TrustedEvent};
use crate::hub::Subscription;
use crate::ids::TokenId;
use crate::invoice;
use crate::rooms::Room;
use crate::snapshot;

/// Close code: the server is going away.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: the client broke the protocol.
pub const CLOSE_PROTOCOL: u16 = 1002;
/// Close code: a text frame was not valid UTF-8.
pub const CLOSE_INVALID_DATA: u16 = 1007;
/// Close code: the client sent frames faster than allowed.
pub const CLOSE_POLICY: u16 = 1008;
/// Close code: a client message was larger than the limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: the server could not serve the connection.
pub const CLOSE_INTERNAL: u16 = 1011;
/// Close code: the client did not read fast enough and its queue filled up.
pub const CLOSE_TOO_SLOW: u16 = 4000;

/// Read buffer per connection. The protocol library's default (128 KiB) is
/// zero-filled up to its capacity on the first read, so it would cost every
/// idle connection 128 KiB of memory (4 KiB still cost 3.8 KB each in
/// docs/BENCHMARKS.md). Read-only endpoints read nothing but control
/// frames, at most 131 bytes each; a larger client message is still read
/// whole (up to the message limit), just in more reads.
const READ_BUFFER_BYTES: usize = 256;
/// Bytes collected before a write reaches the socket; writes are flushed
/// per batch anyway, so a small target only saves memory.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

/// `/ws/jpp/invoice/{id}/`: one invoice's payments.
pub async fn invoice_room(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<Resume>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let id = parse_invoice_id(&id)?;
    let after = parse_after(query)?;
    if !invoice::exists(&state.pool, id).await? {
        return Err(ApiError::invoice_not_found(id));
    }
    accept(state, Room::Invoice(id), after, (peer, &headers), upgrade)
}

/// `/ws/watch/address/{address}/` and its legacy alias `/ws/watch/bch/{address}/`:
/// every payment to one address.
pub async fn address_room(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(address): Path<String>,
    query: Result<Query<Resume>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let address = parse_address(&address)?;
    let after = parse_after(query)?;
    accept(
        state,
        Room::Address(address),
        after,
        (peer, &headers),
        upgrade,
    )
}

/// `/ws/watch/address/{address}/{token_id}/`: one token's payments to one address.
pub async fn address_token_room(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path((address, token)): Path<(String, String)>,
    query: Result<Query<Resume>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let address = parse_address(&address)?;
    let token = TokenId::parse(&token)
        .map_err(|e| ApiError::bad_request("invalid_token_id", e.to_string()))?;
    let after = parse_after(query)?;
    accept(
        state,
        Room::AddressToken(address, token),
        after,
        (peer, &headers),
        upgrade,
    )
}

/// Query parameters of the room endpoints.
#[derive(Debug, Deserialize)]
pub struct Resume {
    /// The `cursor` of the last frame the client handled.
    after: Option<String>,
}

fn parse_after(query: Result<Query<Resume>, QueryRejection>) -> Result<Option<Cursor>, ApiError> {
    let Query(resume) =
        query.map_err(|rejection| ApiError::bad_request("invalid_query", rejection.body_text()))?;
    resume
        .after
        .map(|text| Cursor::parse(&text))
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_cursor", e.to_string()))
}

fn parse_address(text: &str) -> Result<CashAddr, ApiError> {
    CashAddr::parse(text).map_err(|e| ApiError::bad_request("invalid_address", e.to_string()))
}

/// Checks an upgrade request against shutdown and admission (refusing
/// before the upgrade), and sets its message limit and small buffers. The
/// ticket must be held for the connection's life.
pub(crate) fn admit(
    state: &AppState,
    (peer, headers): (SocketAddr, &HeaderMap),
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    max_message: usize,
) -> Result<(WebSocketUpgrade, Ticket), ApiError> {
    let upgrade = upgrade.map_err(|_| ApiError::UpgradeRequired)?;
    if state.shutdown.is_cancelled() {
        return Err(ApiError::Unavailable("the server is shutting down"));
    }
    let ticket = state
        .admission
        .admit(peer.ip(), headers.get(header::ORIGIN))?;
    let upgrade = upgrade
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES);
    Ok((upgrade, ticket))
}

/// The room is valid: upgrade, with the read side kept small, since nothing
/// a client says is ever used.
fn accept(
    state: AppState,
    room: Room,
    after: Option<Cursor>,
    client: (SocketAddr, &HeaderMap),
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let max = state.config.ws_max_message_bytes;
    let (upgrade, ticket) = admit(&state, client, upgrade, max)?;
    Ok(upgrade.on_upgrade(move |socket| {
        let tasks = state.tasks.clone();
        tasks.track_future(serve(socket, room, after, state).map(move |()| drop(ticket)))
    }))
}

enum Ending {
    ClientLeft,
    Close(u16, &'static str),
    Drop(&'static str),
}

/// One connection, from join to close.
///
/// Built from combinators rather than nested `async` blocks: each such
/// layer that takes the socket by value keeps its own copy of it (about
/// 400 bytes) for the connection's whole life, and an idle connection is
/// mostly this future.
fn serve(
    socket: WebSocket,
    room: Room,
    after: Option<Cursor>,
    state: AppState,
) -> impl Future<Output = ()> + Send {
    let span = tracing::info_span!("ws", %room);
    run(socket, room, after, state)
        .instrument(span.clone())
        .map(move |ending| {
            let _entered = span.enter();
            match ending {
                Ending::ClientLeft => tracing::debug!("client left"),
                Ending::Close(code, reason) => tracing::debug!(code, reason, "closed connection"),
                Ending::Drop(reason) => tracing::debug!(reason, "dropped connection"),
            }
        })
}

async fn run(mut socket: WebSocket, room: Room, after: Option<Cursor>, state: AppState) -> Ending {
    let (room, state) = (&room, &state);
    let config = &state.config;
    let write_timeout = config.ws_write_timeout();
    // Join before reading from the database: a payment committed after that
    // read is then certain to be queued here, and one the read already
    // covered is recognised by its transaction (`seen`) and sent once.
    let subscription = state.hub.subscribe(room.clone());
    // The opening's query futures are large; boxed, their memory is freed
    // once it is sent instead of staying in every idle connection's task.
    let seen = match Box::pin(open(&mut socket, room, after, state)).await {
        Ok(seen) => seen,
        Err(ending) => return ending,
    };

    let mut rate = FrameRate::new(config.ws_max_frames_per_s);
    let mut ping = tokio::time::interval(config.ws_ping_interval());
    ping.reset();
    let mut heard_since_ping = true;
    loop {
        tokio::select! {
            _ = state.shutdown.cancelled() => {
                return close(&mut socket, CLOSE_GOING_AWAY, "server shutting down").await;
            }
            queued = subscription.recv() => {
                let Some(event) = queued else {
                    return close(&mut socket, CLOSE_TOO_SLOW, "too slow: reconnect to resync").await;
                };
                let forwarded = forward(&mut socket, event, &subscription, &seen);
                if !matches!(tokio::time::timeout(write_timeout, forwarded).await, Ok(Ok(()))) {
                    return Ending::Drop("write failed or timed out");
                }
            }
            incoming = socket.recv() => {
                heard_since_ping = true;
                if !rate.allow() {
                    return close(&mut socket, CLOSE_POLICY, "too many frames").await;
                }
                match incoming {
                    None | Some(Ok(Message::Close(_))) => return Ending::ClientLeft,
                    // Data frames are discarded unread; pings are answered by
                    // the protocol layer on this next read or write.
                    Some(Ok(_)) => {}
                    Some(Err(error)) => {
                        return match read_error(error) {
                            Some((code, reason)) => close(&mut socket, code, reason).await,
                            None => Ending::Drop("read error"),
                        };
                    }
                }
            }
            _ = ping.tick() => {
                if !heard_since_ping {
                    return Ending::Drop("no pong within a ping interval");
                }
                heard_since_ping = false;
                if !send(&mut socket, Message::Ping(Default::default()), write_timeout).await {
                    return Ending::Drop("ping write failed or timed out");
                }
            }
        }
    }
}

/// Sends the opening: the backlog after the client's cursor, or else the
/// room's snapshot. Returns the snapshot whose transactions it covered, or
/// how the connection ended.
async fn open(
    socket: &mut WebSocket,
    room: &Room,
    after: Option<Cursor>,
    state: &AppState,
) -> Result<PgSnapshot, Ending> {
    let config = &state.config;
    let write_timeout = config.ws_write_timeout();
    let backlog = match after {
        Some(cursor) => event::backlog(&state.pool, room, &cursor, config.resume_max_events).await,
        None => Ok(Backlog::TooFarBehind),
    };
    match backlog {
        Ok(Backlog::Missed(events, seen)) => {
            let frames = events
                .iter()
                .map(|event| Message::Text(event.frame().clone()));
            if !send_all(socket, frames, write_timeout).await {
                return Err(Ending::Drop("backlog write failed or timed out"));
            }
            Ok(seen)
        }
        Ok(Backlog::TooFarBehind) => {
            match snapshot::load(&state.pool, room, config.address_snapshot_limit).await {
                Ok(Some(snapshot)) => {
                    let frame = std::iter::once(Message::Text(snapshot.frame));
                    if !send_all(socket, frame, write_timeout).await {
                        return Err(Ending::Drop("snapshot write failed or timed out"));
                    }
                    Ok(snapshot.seen)
                }
                Ok(None) => Err(close(socket, CLOSE_INTERNAL, "invoice no longer exists").await),
                Err(error) => {
                    tracing::error!(%error, %room, "snapshot query failed");
                    Err(close(socket, CLOSE_INTERNAL, "snapshot failed").await)
                }
            }
        }
        Err(error) => {
            tracing::error!(%error, %room, "backlog query failed");
            Err(close(socket, CLOSE_INTERNAL, "backlog failed").await)
        }
    }
}

/// Most queued events written before one flush.
const WRITE_BATCH: usize = 64;

/// Writes `first` and whatever else is already queued (up to
/// [`WRITE_BATCH`]) with a single flush, so a client that reads at full
/// speed drains its queue faster than a burst of commits can fill it.
/// Events whose transaction `seen` sees were covered by the snapshot or
/// backlog and are skipped.
async fn forward(
    socket: &mut WebSocket,
    first: Arc<TrustedEvent>,
    queue: &Subscription,
    seen: &PgSnapshot,
) -> Result<(), axum::Error> {
    let mut next = Some(first);
    let mut written = 0;
    while let Some(event) = next.take() {
        if !seen.sees(event.xid()) {
            socket.feed(Message::Text(event.frame().clone())).await?;
            written += 1;
        }
        if written < WRITE_BATCH {
            next = queue.try_recv();
        }
    }
    socket.flush().await
}

/// The close a read error deserves, if the peer can still be told.
pub(crate) fn read_error(error: axum::Error) -> Option<(u16, &'static str)> {
    use tokio_tungstenite::tungstenite::Error;
    match error.into_inner().downcast_ref::<Error>() {
        Some(Error::Capacity(_)) => Some((CLOSE_TOO_BIG, "message too big")),
        Some(Error::Utf8(_)) => Some((CLOSE_INVALID_DATA, "invalid UTF-8 in a text frame")),
        Some(Error::Protocol(_)) => Some((CLOSE_PROTOCOL, "protocol error")),
        _ => None,
    }
}

/// Counts a client's frames in one-second windows.
pub(crate) struct FrameRate {
    limit: u32,
    window_start: tokio::time::Instant,
    count: u32,
}

impl FrameRate {
    pub(crate) fn new(limit: u32) -> Self {
        FrameRate {
            limit: limit.max(1),
            window_start: tokio::time::Instant::now(),
            count: 0,
        }
    }

    /// Records one frame; false once the limit for this second is passed.
    pub(crate) fn allow(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.count = 0;
        }
        self.count += 1;
        self.count <= self.limit
    }
}

pub(crate) async fn send_all(
    socket: &mut WebSocket,
    messages: impl Iterator<Item = Message>,
    timeout: Duration,
) -> bool {
    let write = async {
        for message in messages {
            socket.feed(message).await?;
        }
        socket.flush().await
    };
    matches!(tokio::time::timeout(timeout, write).await, Ok(Ok(())))
}

async fn send(socket: &mut WebSocket, message: Message, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, socket.send(message)).await,
        Ok(Ok(()))
    )
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) -> Ending {
    send_close(socket, code, reason).await;
    Ending::Close(code, reason)
}

/// Sends a close frame; a peer that cannot take it is dropped all the same.
pub(crate) async fn send_close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        socket.send(Message::Close(Some(frame))),
    )
    .await;
}
