//! Snapshot frames: what a connection is sent right after it joins its room,
//! read from the database so a page opened after a payment still shows it.

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;
use sqlx::PgPool;

use crate::address::CashAddr;
use crate::cursor::{Cursor, PgSnapshot};
use crate::ids::TokenId;
use crate::invoice::{self, InvoiceView, PAYMENT_COLUMNS, PaymentView};
use crate::rooms::Room;

/// A serialized snapshot frame and the database snapshot it was read under.
/// A live event whose transaction that snapshot sees is already covered by
/// the frame and must not be sent again.
#[derive(Debug)]
pub struct Snapshot {
    /// The `snapshot` frame.
    pub frame: Utf8Bytes,
    /// What the frame covers.
    pub seen: PgSnapshot,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "snapshot")]
struct InvoiceFrame<'a> {
    invoice: &'a InvoiceView,
    payments: &'a [PaymentView],
    cursor: String,
}

#[derive(Serialize)]
#[serde(tag = "type", rename = "snapshot")]
struct AddressFrame<'a> {
    address: &'a CashAddr,
    token_id: Option<&'a TokenId>,
    /// Most payments the snapshot holds; older ones are left out.
    limit: i64,
    payments: &'a [PaymentView],
    cursor: String,
}

/// Loads the snapshot of `room` in one REPEATABLE READ transaction: an
/// invoice with its totals and all its payments, or an address's
/// `address_limit` most recent payments, oldest first. `None` if the invoice
/// does not exist.
pub async fn load(
    pool: &PgPool,
    room: &Room,
    address_limit: i64,
) -> Result<Option<Snapshot>, sqlx::Error> {
    let mut tx = invoice::begin_consistent_read(pool).await?;
    let seen = PgSnapshot::current(&mut *tx).await?;
    let cursor = Cursor::at(seen.clone()).to_string();
    let json = match room {
        Room::Invoice(id) => {
            let Some(found) = invoice::load_with_payments_in(&mut tx, *id).await? else {
                return Ok(None);
            };
            serde_json::to_string(&InvoiceFrame {
                invoice: &found.invoice,
                payments: &found.payments,
                cursor,
            })
        }
        Room::Address(address) | Room::AddressToken(address, _) => {
            let token = match room {
                Room::AddressToken(_, token) => Some(token),
                _ => None,
            };
            let mut payments: Vec<PaymentView> = sqlx::query_as(&format!(
                "select {PAYMENT_COLUMNS} from payments p \
                 where p.address = $1 and ($2::text is null or p.token_id = $2) \
                 order by p.id desc limit $3"
            ))
            .bind(address.as_str())
            .bind(token.map(TokenId::as_str))
            .bind(address_limit)
            .fetch_all(&mut *tx)
            .await?;
            payments.reverse();
            serde_json::to_string(&AddressFrame {
                address,
                token_id: token,
                limit: address_limit,
                payments: &payments,
                cursor,
            })
        }
    };
    tx.commit().await?;
    let json = json.map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Some(Snapshot {
        frame: json.into(),
        seen,
    }))
}
