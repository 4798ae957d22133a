//! The HTTP JSON API and the error type every HTTP response shares.
//!
//! Errors have one stable body, `{"error":{"code":"...","message":"..."}}`,
//! and the status that fits. Internal causes are logged, never sent.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::address::CashAddr;
use crate::app::AppState;
use crate::ids::InvoiceId;
use crate::invoice::{self, NewInvoice};

/// Longest memo accepted, in characters.
pub const MAX_MEMO_CHARS: usize = 1000;
/// Default and bounds of `expires_in_s`.
pub const DEFAULT_EXPIRES_IN_S: i64 = 30 * 60;
const MIN_EXPIRES_IN_S: i64 = 60;
const MAX_EXPIRES_IN_S: i64 = 30 * 24 * 60 * 60;

/// An HTTP error response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message says how.
    #[error("{message}")]
    BadRequest {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// The thing named does not exist.
    #[error("{message}")]
    NotFound {
        /// Stable machine-readable code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// Missing or wrong bearer token.
    #[error("a valid `Authorization: Bearer <PAYWATCH_API_TOKEN>` header is required")]
    Unauthorized,
    /// Invoice creation is switched off.
    #[error("invoice creation is disabled: set PAYWATCH_API_TOKEN on the server to enable it")]
    CreationDisabled,
    /// The service's database role may not insert invoices.
    #[error(
        "this server's database role may not create invoices (see the README's Least privilege section)"
    )]
    CreationNotPermitted,
    /// Not a WebSocket upgrade request on a WebSocket route.
    #[error("this endpoint only accepts WebSocket upgrade requests")]
    UpgradeRequired,
    /// The server holds as many WebSocket connections as it may.
    #[error(
        "the server holds as many WebSocket connections as it may (PAYWATCH_MAX_CONNECTIONS); try again later"
    )]
    TooManyConnections,
    /// This client IP holds as many WebSocket connections as it may.
    #[error("too many WebSocket connections from this address (PAYWATCH_MAX_CONNECTIONS_PER_IP)")]
    TooManyConnectionsFromIp,
    /// The page's Origin is not in PAYWATCH_ALLOWED_ORIGINS.
    #[error("WebSocket connections from this Origin are not allowed")]
    OriginNotAllowed,
    /// The server is shutting down or not ready.
    #[error("{0}")]
    Unavailable(&'static str),
    /// Anything the client cannot fix; the cause is logged, not sent.
    #[error("internal error")]
    Internal(#[from] sqlx::Error),
}

impl ApiError {
    /// A 400 with `code` and a message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::NotFound { code, .. } => (StatusCode::NOT_FOUND, code),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::CreationDisabled => (StatusCode::FORBIDDEN, "creation_disabled"),
            ApiError::CreationNotPermitted => (StatusCode::FORBIDDEN, "creation_not_permitted"),
            ApiError::UpgradeRequired => (StatusCode::UPGRADE_REQUIRED, "upgrade_required"),
            ApiError::TooManyConnections => {
                (StatusCode::SERVICE_UNAVAILABLE, "too_many_connections")
            }
            ApiError::TooManyConnectionsFromIp => (
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_connections_from_ip",
            ),
            ApiError::OriginNotAllowed => (StatusCode::FORBIDDEN, "origin_not_allowed"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error"),
        }
    }

    pub(crate) fn invoice_not_found(id: InvoiceId) -> Self {
        ApiError::NotFound {
            code: "invoice_not_found",
            message: format!("no invoice with id {id}"),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %cause, "request failed");
        }
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code,
                    message: self.to_string(),
                },
            }),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Parses an invoice id from a path segment, as a 400 on failure.
pub(crate) fn parse_invoice_id(text: &str) -> Result<InvoiceId, ApiError> {
    InvoiceId::parse(text).map_err(|e| ApiError::bad_request("invalid_invoice_id", e.to_string()))
}

/// Body of `POST /api/invoices`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInvoice {
    amount_sats: i64,
    #[serde(default)]
    memo: String,
    expires_in_s: Option<i64>,
    /// CashAddr to be paid to, in any spelling [`CashAddr::parse`] takes.
    #[serde(default)]
    address: Option<String>,
}

impl CreateInvoice {
    fn validate(self) -> Result<NewInvoice, ApiError> {
        if self.amount_sats <= 0 {
            return Err(ApiError::bad_request(
                "invalid_amount",
                "amount_sats must be a positive integer",
            ));
        }
        if self.memo.chars().count() > MAX_MEMO_CHARS {
            return Err(ApiError::bad_request(
                "invalid_memo",
                format!("memo must be at most {MAX_MEMO_CHARS} characters"),
            ));
        }
        let expires_in_s = self.expires_in_s.unwrap_or(DEFAULT_EXPIRES_IN_S);
        if !(MIN_EXPIRES_IN_S..=MAX_EXPIRES_IN_S).contains(&expires_in_s) {
            return Err(ApiError::bad_request(
                "invalid_expiry",
                format!("expires_in_s must be between {MIN_EXPIRES_IN_S} and {MAX_EXPIRES_IN_S}"),
            ));
        }
        let address = self
            .address
            .map(|text| CashAddr::parse(&text))
            .transpose()
            .map_err(|e| ApiError::bad_request("invalid_address", e.to_string()))?;
        Ok(NewInvoice {
            amount_sats: self.amount_sats,
            memo: self.memo,
            expires_in_s,
            address,
        })
    }
}

fn authorize(expected: Option<&str>, headers: &HeaderMap) -> Result<(), ApiError> {
    let expected = expected.ok_or(ApiError::CreationDisabled)?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// `POST /api/invoices`: creates an invoice (bearer token required).
pub async fn create_invoice(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<CreateInvoice>, JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(state.config.api_token.as_deref(), &headers)?;
    let Json(body) =
        body.map_err(|rejection| ApiError::bad_request("invalid_body", rejection.body_text()))?;
    let new = body.validate()?;
    let created = invoice::create(&state.pool, &new).await.map_err(|error| {
        match error.as_database_error().and_then(|e| e.code()) {
            // insufficient_privilege: the read-only role, as documented.
            Some(code) if code == "42501" => ApiError::CreationNotPermitted,
            _ => ApiError::Internal(error),
        }
    })?;
    let location = format!("/api/invoices/{}", created.id);
    let mut response = (
        StatusCode::CREATED,
        Json(invoice::InvoiceWithPayments {
            invoice: created,
            payments: Vec::new(),
        }),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// `GET /api/invoices/{id}`: the invoice, its totals, status and payments.
pub async fn get_invoice(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<invoice::InvoiceWithPayments>, ApiError> {
    let id = parse_invoice_id(&id)?;
    invoice::load_with_payments(&state.pool, id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::invoice_not_found(id))
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: 200 only while the listener is connected.
pub async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    if *state.listener_ready.borrow() {
        Ok("ready")
    } else {
        Err(ApiError::Unavailable(
            "the database listener is not connected",
        ))
    }
}

/// `GET /metrics`: Prometheus metrics (OpenMetrics text).
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics.render(&state.hub, &state.admission) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Fallback for unknown paths.
pub async fn not_found() -> ApiError {
    ApiError::NotFound {
        code: "not_found",
        message: "no such endpoint".to_owned(),
    }
}
