//! JSON-RPC 2.0 over WebSocket at `/ws/rpc`.
//!
//! Every answer goes to the caller only. `invoice.subscribe` and
//! `address.subscribe` add this connection as a listener of a room, exactly
//! like the room endpoints, and nothing more: no method publishes, and the
//! hub accepts nothing but [`crate::event::TrustedEvent`]s built from
//! database rows. Events arrive as `payment_received` notifications, the
//! first after each subscribe being the room's snapshot.
//!
//! Application error codes (JSON-RPC leaves -32000..-32099 to servers):
//! -32000 rate limit exceeded, -32001 too many subscriptions, -32002 not
//! found.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::stream::{BoxStream, StreamExt};
use serde_json::{Map, Value, json};
use tokio_stream::StreamMap;
use tracing::Instrument;

use crate::address::CashAddr;
use crate::api::ApiError;
use crate::app::AppState;
use crate::cursor::PgSnapshot;
use crate::event::TrustedEvent;
use crate::ids::{InvoiceId, TokenId};
use crate::invoice;
use crate::rooms::Room;
use crate::snapshot;
use crate::ws::{
    CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TOO_SLOW, FrameRate, admit, read_error, send_all,
    send_close,
};

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const INTERNAL_ERROR: i64 = -32603;
const RATE_LIMITED: i64 = -32000;
const TOO_MANY_SUBSCRIPTIONS: i64 = -32001;
const NOT_FOUND: i64 = -32002;

/// Largest message the WebSocket layer accepts on `/ws/rpc` (larger: close
/// 1009). Requests above `PAYWATCH_RPC_MAX_REQUEST_BYTES` but below this get
/// a JSON-RPC error instead.
const HARD_MESSAGE_LIMIT: usize = 1024 * 1024;

/// `GET /ws/rpc`.
pub async fn endpoint(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let hard = state
        .config
        .rpc_max_request_bytes
        .saturating_mul(4)
        .clamp(1024, HARD_MESSAGE_LIMIT);
    let (upgrade, ticket) = admit(&state, (peer, &headers), upgrade, hard)?;
    Ok(upgrade.on_upgrade(move |socket| {
        let tasks = state.tasks.clone();
        tasks.track_future(
            async move {
                Session::new(state).run(socket).await;
                drop(ticket);
            }
            .instrument(tracing::info_span!("rpc", %peer)),
        )
    }))
}

/// A JSON-RPC error object.
#[derive(Debug)]
struct RpcError {
    code: i64,
    message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    fn invalid_params(message: impl Into<String>) -> Self {
        RpcError::new(INVALID_PARAMS, message)
    }
}

impl From<sqlx::Error> for RpcError {
    fn from(error: sqlx::Error) -> Self {
        tracing::error!(%error, "rpc request failed");
        RpcError::new(INTERNAL_ERROR, "internal error")
    }
}

fn response(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({"jsonrpc": "2.0", "result": result, "id": id}),
        Err(error) => json!({
            "jsonrpc": "2.0",
            "error": {"code": error.code, "message": error.message},
            "id": id,
        }),
    }
}

/// A subscription's events; `None` once, when the hub dropped it for a full
/// queue.
type Feed = BoxStream<'static, Option<Arc<TrustedEvent>>>;

struct Subscribed {
    room: Room,
    /// Live events this snapshot sees were in the subscription's snapshot.
    seen: PgSnapshot,
}

struct Session {
    state: AppState,
    feeds: StreamMap<String, Feed>,
    subscriptions: BTreeMap<String, Subscribed>,
    next_subscription: u64,
    rate: FrameRate,
    /// Notifications to send after the current response (snapshots).
    after_response: Vec<String>,
}

/// Parameters, by position or by name, read against a list of names.
struct Params(Map<String, Value>);

impl Params {
    fn parse(params: Option<&Value>, names: &[&str]) -> Result<Self, RpcError> {
        match params {
            None => Ok(Params(Map::new())),
            Some(Value::Object(map)) => {
                if let Some(unknown) = map.keys().find(|key| !names.contains(&key.as_str())) {
                    return Err(RpcError::invalid_params(format!(
                        "unknown parameter `{unknown}`; expected {names:?}"
                    )));
                }
                Ok(Params(map.clone()))
            }
            Some(Value::Array(values)) => {
                if values.len() > names.len() {
                    return Err(RpcError::invalid_params(format!(
                        "at most {} positional parameters: {names:?}",
                        names.len()
                    )));
                }
                Ok(Params(
                    names
                        .iter()
                        .zip(values)
                        .map(|(name, value)| (name.to_string(), value.clone()))
                        .collect(),
                ))
            }
            Some(_) => Err(RpcError::new(
                INVALID_REQUEST,
                "params must be an array or an object",
            )),
        }
    }

    fn text(&self, name: &str) -> Result<Option<&str>, RpcError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(RpcError::invalid_params(format!(
                "`{name}` must be a string"
            ))),
        }
    }

    fn required(&self, name: &str) -> Result<&str, RpcError> {
        self.text(name)?
            .ok_or_else(|| RpcError::invalid_params(format!("`{name}` is required")))
    }
}

fn parse_invoice_id(text: &str) -> Result<InvoiceId, RpcError> {
    InvoiceId::parse(text).map_err(|e| RpcError::invalid_params(e.to_string()))
}

impl Session {
    fn new(state: AppState) -> Self {
        let rate = FrameRate::new(state.config.rpc_max_requests_per_s);
        Session {
            state,
            feeds: StreamMap::new(),
            subscriptions: BTreeMap::new(),
            next_subscription: 1,
            rate,
            after_response: Vec::new(),
        }
    }

    async fn run(mut self, mut socket: WebSocket) {
        let write_timeout = self.state.config.ws_write_timeout();
        let mut ping = tokio::time::interval(self.state.config.ws_ping_interval());
        ping.reset();
        let mut heard_since_ping = true;
        // Frames beyond four times the request rate close the connection;
        // requests beyond the rate get an error.
        let mut frames = FrameRate::new(self.state.config.rpc_max_requests_per_s.saturating_mul(4));
        loop {
            let outgoing: Vec<Message> = tokio::select! {
                _ = self.state.shutdown.cancelled() => {
                    return send_close(&mut socket, CLOSE_GOING_AWAY, "server shutting down").await;
                }
                Some((subscription, event)) = self.feeds.next() => {
                    let Some(event) = event else {
                        return send_close(&mut socket, CLOSE_TOO_SLOW, "too slow: reconnect to resync").await;
                    };
                    self.notification(&subscription, &event).into_iter().map(|n| Message::Text(n.into())).collect()
                }
                incoming = socket.recv() => {
                    heard_since_ping = true;
                    if !frames.allow() {
                        return send_close(&mut socket, CLOSE_POLICY, "too many frames").await;
                    }
                    match incoming {
                        None | Some(Ok(Message::Close(_))) => return,
                        Some(Ok(Message::Text(text))) => {
                            let mut out: Vec<Message> = self
                                .handle(text.as_str())
                                .await
                                .into_iter()
                                .map(|reply| Message::Text(reply.into()))
                                .collect();
                            out.extend(self.after_response.drain(..).map(|n| Message::Text(n.into())));
                            out
                        }
                        Some(Ok(Message::Binary(_))) => {
                            let error = response(Value::Null, Err(RpcError::new(INVALID_REQUEST, "requests are JSON text frames")));
                            vec![Message::Text(error.to_string().into())]
                        }
                        Some(Ok(_)) => Vec::new(),
                        Some(Err(error)) => {
                            if let Some((code, reason)) = read_error(error) {
                                send_close(&mut socket, code, reason).await;
                            }
                            return;
                        }
                    }
                }
                _ = ping.tick() => {
                    if !heard_since_ping {
                        return;
                    }
                    heard_since_ping = false;
                    vec![Message::Ping(Default::default())]
                }
            };
            if !outgoing.is_empty()
                && !send_all(&mut socket, outgoing.into_iter(), write_timeout).await
            {
                return;
            }
        }
    }

    /// The `payment_received` notification of `event` for `subscription`,
    /// unless its snapshot already covered it. The event's own frame is
    /// spliced in as it is: no JSON work per subscriber.
    fn notification(&self, subscription: &str, event: &TrustedEvent) -> Option<String> {
        let subscribed = self.subscriptions.get(subscription)?;
        if subscribed.seen.sees(event.xid()) {
            return None;
        }
        Some(wrap(subscription, event.frame().as_str()))
    }

    /// Answers one text frame: a request or a batch. `None`: nothing to send
    /// (only notifications).
    async fn handle(&mut self, text: &str) -> Option<String> {
        if text.len() > self.state.config.rpc_max_request_bytes {
            return Some(
                response(
                    Value::Null,
                    Err(RpcError::new(
                        INVALID_REQUEST,
                        format!(
                            "request larger than {} bytes",
                            self.state.config.rpc_max_request_bytes
                        ),
                    )),
                )
                .to_string(),
            );
        }
        let parsed: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(error) => {
                let error = RpcError::new(PARSE_ERROR, format!("parse error: {error}"));
                return Some(response(Value::Null, Err(error)).to_string());
            }
        };
        match parsed {
            Value::Array(batch) if batch.is_empty() => Some(
                response(
                    Value::Null,
                    Err(RpcError::new(INVALID_REQUEST, "empty batch")),
                )
                .to_string(),
            ),
            Value::Array(batch) if batch.len() > self.state.config.rpc_max_batch => Some(
                response(
                    Value::Null,
                    Err(RpcError::new(
                        INVALID_REQUEST,
                        format!(
                            "batch larger than {} requests",
                            self.state.config.rpc_max_batch
                        ),
                    )),
                )
                .to_string(),
            ),
            Value::Array(batch) => {
                let mut replies = Vec::new();
                for request in &batch {
                    replies.extend(self.call(request).await);
                }
                (!replies.is_empty()).then(|| Value::Array(replies).to_string())
            }
            request => self.call(&request).await.map(|reply| reply.to_string()),
        }
    }

    /// One request object. `None` for a notification (a request without an
    /// `id` member), which is never answered, not even with an error.
    async fn call(&mut self, request: &Value) -> Option<Value> {
        let Value::Object(object) = request else {
            return Some(response(
                Value::Null,
                Err(RpcError::new(
                    INVALID_REQUEST,
                    "a request must be an object",
                )),
            ));
        };
        let id = match object.get("id") {
            None => None,
            Some(id @ (Value::Null | Value::String(_) | Value::Number(_))) => Some(id.clone()),
            Some(_) => {
                return Some(response(
                    Value::Null,
                    Err(RpcError::new(
                        INVALID_REQUEST,
                        "id must be a string, a number or null",
                    )),
                ));
            }
        };
        let valid = object.get("jsonrpc") == Some(&json!("2.0"))
            && object
                .keys()
                .all(|key| matches!(key.as_str(), "jsonrpc" | "method" | "params" | "id"));
        let method = object.get("method").and_then(Value::as_str);
        let result = match (valid, method) {
            (true, Some(method)) if self.rate.allow() => {
                self.dispatch(method, object.get("params")).await
            }
            (true, Some(_)) => Err(RpcError::new(
                RATE_LIMITED,
                format!(
                    "more than {} requests per second",
                    self.state.config.rpc_max_requests_per_s
                ),
            )),
            _ => Err(RpcError::new(
                INVALID_REQUEST,
                "a request needs \"jsonrpc\": \"2.0\", a string \"method\", and optionally \"params\" and \"id\"",
            )),
        };
        // An invalid request is answered even without an id: the spec's
        // examples answer {"jsonrpc": "2.0", "method": 1, ...} with id null.
        match (id, &result) {
            (Some(id), _) => Some(response(id, result)),
            (None, Err(error)) if error.code == INVALID_REQUEST => {
                Some(response(Value::Null, result))
            }
            (None, _) => None,
        }
    }

    async fn dispatch(&mut self, method: &str, params: Option<&Value>) -> Result<Value, RpcError> {
        match method {
            "ping" => {
                Params::parse(params, &[])?;
                Ok(json!("pong"))
            }
            "invoice.get" => {
                let params = Params::parse(params, &["id"])?;
                let id = parse_invoice_id(params.required("id")?)?;
                let found = invoice::load_with_payments(&self.state.pool, id)
                    .await?
                    .ok_or_else(|| RpcError::new(NOT_FOUND, format!("no invoice with id {id}")))?;
                serde_json::to_value(found)
                    .map_err(|_| RpcError::new(INTERNAL_ERROR, "internal error"))
            }
            "invoice.subscribe" => {
                let params = Params::parse(params, &["id"])?;
                let id = parse_invoice_id(params.required("id")?)?;
                if !invoice::exists(&self.state.pool, id).await? {
                    return Err(RpcError::new(NOT_FOUND, format!("no invoice with id {id}")));
                }
                self.subscribe(Room::Invoice(id)).await
            }
            "address.subscribe" => {
                let params = Params::parse(params, &["address", "token_id"])?;
                let address = CashAddr::parse(params.required("address")?)
                    .map_err(|e| RpcError::invalid_params(e.to_string()))?;
                let room = match params.text("token_id")? {
                    Some(token) => Room::AddressToken(
                        address,
                        TokenId::parse(token)
                            .map_err(|e| RpcError::invalid_params(e.to_string()))?,
                    ),
                    None => Room::Address(address),
                };
                self.subscribe(room).await
            }
            "unsubscribe" => {
                let params = Params::parse(params, &["subscription"])?;
                let subscription = params.required("subscription")?;
                let removed = self.subscriptions.remove(subscription).is_some();
                self.feeds.remove(subscription);
                Ok(json!(removed))
            }
            "subscriptions.list" => {
                Params::parse(params, &[])?;
                Ok(Value::Array(
                    self.subscriptions
                        .iter()
                        .map(|(id, subscribed)| json!({"subscription": id, "room": subscribed.room.to_string()}))
                        .collect(),
                ))
            }
            other => Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("method `{other}` not found"),
            )),
        }
    }

    /// Joins `room`, queues its snapshot as the subscription's first
    /// notification, and returns the subscription id.
    async fn subscribe(&mut self, room: Room) -> Result<Value, RpcError> {
        let max = self.state.config.rpc_max_subscriptions;
        if self.subscriptions.len() >= max {
            return Err(RpcError::new(
                TOO_MANY_SUBSCRIPTIONS,
                format!("at most {max} subscriptions per connection"),
            ));
        }
        // Join first, then read the snapshot (as the room endpoints do).
        let subscription = self.state.hub.subscribe(room.clone());
        let snapshot = snapshot::load(
            &self.state.pool,
            &room,
            self.state.config.address_snapshot_limit,
        )
        .await?
        .ok_or_else(|| RpcError::new(NOT_FOUND, format!("{room} no longer exists")))?;
        let id = format!("s{}", self.next_subscription);
        self.next_subscription += 1;
        self.after_response.push(wrap(&id, snapshot.frame.as_str()));
        let feed = futures_util::stream::unfold(Some(subscription), |state| async move {
            let subscription = state?;
            match subscription.recv().await {
                Some(event) => Some((Some(event), Some(subscription))),
                None => Some((None, None)),
            }
        });
        self.feeds.insert(id.clone(), Box::pin(feed) as Pin<Box<_>>);
        self.subscriptions.insert(
            id.clone(),
            Subscribed {
                room,
                seen: snapshot.seen,
            },
        );
        Ok(json!(id))
    }
}

/// `{"jsonrpc":"2.0","method":"payment_received","params":{"subscription":..,"event":<frame>}}`
/// with the frame's JSON spliced in unchanged.
fn wrap(subscription: &str, frame: &str) -> String {
    // Subscription ids are "s" and digits: nothing to escape.
    format!(
        r#"{{"jsonrpc":"2.0","method":"payment_received","params":{{"subscription":"{subscription}","event":{frame}}}}}"#
    )
}
