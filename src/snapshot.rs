//! Snapshot frames: what a connection is sent right after it joins its room,
//! read from the database so a page opened after a payment still shows it.

use std::collections::HashSet;

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use sqlx::PgPool;

use crate::address::CashAddr;
use crate::ids::TokenId;
use crate::invoice::{self, InvoiceView, PAYMENT_COLUMNS, PaymentView};
use crate::rooms::Room;

/// A serialized snapshot and the payment ids it contains, so that live events
/// already covered by it are not sent a second time.
#[derive(Debug)]
pub struct Snapshot {
    /// The `snapshot` frame.
    pub frame: Utf8Bytes,
    /// Ids of the payments in the frame.
    pub payment_ids: HashSet<i64>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "snapshot")]
struct InvoiceFrame<'a> {
    invoice: &'a InvoiceView,
    payments: &'a [PaymentView],
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "snapshot")]
struct AddressFrame<'a> {
    address: &'a CashAddr,
    token_id: Option<&'a TokenId>,
    /// Most payments the snapshot holds; older ones are left out.
    limit: i64,
    payments: &'a [PaymentView],
}

fn snapshot(
    json: Result<String, serde_json::Error>,
    payments: &[PaymentView],
) -> Result<Snapshot, sqlx::Error> {
    let json = json.map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Snapshot {
        frame: json.into(),
        payment_ids: payments.iter().map(|p| p.event_id).collect(),
    })
}

/// Loads the snapshot of `room`: an invoice with its totals and all its
/// payments, or an address's `address_limit` most recent payments, oldest
/// first. `None` if the invoice does not exist.
pub async fn load(
    pool: &PgPool,
    room: &Room,
    address_limit: i64,
) -> Result<Option<Snapshot>, sqlx::Error> {
    let (address, token) = match room {
        Room::Invoice(id) => {
            let Some(found) = invoice::load_with_payments(pool, *id).await? else {
                return Ok(None);
            };
            let frame = InvoiceFrame {
                invoice: &found.invoice,
                payments: &found.payments,
            };
            return snapshot(serde_json::to_string(&frame), &found.payments).map(Some);
        }
        Room::Address(address) => (address, None),
        Room::AddressToken(address, token) => (address, Some(token)),
    };
    let mut payments: Vec<PaymentView> = sqlx::query_as(&format!(
        "select {PAYMENT_COLUMNS} from payments p \
         where p.address = $1 and ($2::text is null or p.token_id = $2) \
         order by p.id desc limit $3"
    ))
    .bind(address.as_str())
    .bind(token.map(TokenId::as_str))
    .bind(address_limit)
    .fetch_all(pool)
    .await?;
    payments.reverse();
    let frame = AddressFrame {
        address,
        token_id: token,
        limit: address_limit,
        payments: &payments,
    };
    snapshot(serde_json::to_string(&frame), &payments).map(Some)
}
