//! The trusted event: a payment reloaded from the database, with the rooms it
//! belongs to and its wire frame, serialized once.
//!
//! [`TrustedEvent`] has private fields and no public constructor. The only
//! code that builds one is [`reload`] in this module, from rows it has just
//! read from the `payments` and `invoices` tables. The hub only accepts this
//! type, so nothing else in the process (the WebSocket layer included) can put
//! a frame into a room. `tests/compile_fail/` proves that code outside this
//! crate cannot build one either.

use std::collections::HashMap;

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use crate::address::CashAddr;
use crate::ids::{PaymentId, TokenId};
use crate::invoice::{InvoiceStatus, PAYMENT_COLUMNS};
use crate::rooms::Room;

/// A committed payment, reloaded from the database, ready to be pushed.
#[derive(Debug)]
pub struct TrustedEvent {
    payment_id: PaymentId,
    xid: u64,
    rooms: Vec<Room>,
    frame: Utf8Bytes,
}

impl TrustedEvent {
    /// The payment's id (also the frame's `event_id`).
    pub fn payment_id(&self) -> PaymentId {
        self.payment_id
    }

    /// The inserting transaction's id (`payments.xid`), the commit-safe cursor.
    pub fn xid(&self) -> u64 {
        self.xid
    }

    /// Rooms the payment goes to, derived from the reloaded row.
    pub fn rooms(&self) -> &[Room] {
        &self.rooms
    }

    /// The `payment_received` frame, serialized once for every subscriber.
    pub fn frame(&self) -> &Utf8Bytes {
        &self.frame
    }
}

#[derive(sqlx::FromRow)]
struct ReloadedRow {
    id: i64,
    xid: i64,
    txid: String,
    paid_at: DateTime<Utc>,
    amount_sats: i64,
    memo: String,
    address: Option<String>,
    token_id: Option<String>,
    invoice_id: Option<Uuid>,
    invoice_amount_sats: Option<i64>,
    invoice_paid_sats: Option<i64>,
    invoice_expires_at: Option<DateTime<Utc>>,
    invoice_memo: Option<String>,
    as_of: DateTime<Utc>,
}

#[derive(Serialize)]
struct PaymentReceived<'a> {
    r#type: &'static str,
    event_id: i64,
    txid: &'a str,
    paid_at: DateTime<Utc>,
    amount_sats: i64,
    memo: &'a str,
    address: Option<&'a str>,
    token_id: Option<&'a str>,
    invoice: Option<InvoiceSummary<'a>>,
}

#[derive(Serialize)]
struct InvoiceSummary<'a> {
    id: Uuid,
    amount_sats: i64,
    paid_sats: i64,
    status: InvoiceStatus,
    expires_at: DateTime<Utc>,
    memo: &'a str,
}

impl ReloadedRow {
    /// The rooms of this row. A stored address or token id that does not
    /// parse (a writer bypassed the checks some other way) costs that room,
    /// never the invoice room, and is logged.
    fn rooms(&self) -> Vec<Room> {
        let mut rooms = Vec::with_capacity(3);
        if let Some(invoice_id) = self.invoice_id {
            rooms.push(Room::Invoice(invoice_id.into()));
        }
        if let Some(text) = &self.address {
            match CashAddr::parse(text) {
                Ok(address) => {
                    if let Some(token) = &self.token_id {
                        match TokenId::parse(token) {
                            Ok(token) => rooms.push(Room::AddressToken(address.clone(), token)),
                            Err(error) => {
                                tracing::warn!(payment_id = self.id, %error, "stored token id does not parse; token room skipped")
                            }
                        }
                    }
                    rooms.push(Room::Address(address));
                }
                Err(error) => {
                    tracing::warn!(payment_id = self.id, %error, "stored address does not parse; address rooms skipped")
                }
            }
        }
        rooms
    }

    fn into_event(self) -> Result<TrustedEvent, serde_json::Error> {
        let invoice = match (
            self.invoice_id,
            self.invoice_amount_sats,
            self.invoice_paid_sats,
            self.invoice_expires_at,
            &self.invoice_memo,
        ) {
            (Some(id), Some(amount_sats), Some(paid_sats), Some(expires_at), Some(memo)) => {
                Some(InvoiceSummary {
                    id,
                    amount_sats,
                    paid_sats,
                    status: InvoiceStatus::from_totals(
                        amount_sats,
                        paid_sats,
                        expires_at,
                        self.as_of,
                    ),
                    expires_at,
                    memo,
                })
            }
            _ => None,
        };
        let json = serde_json::to_string(&PaymentReceived {
            r#type: "payment_received",
            event_id: self.id,
            txid: &self.txid,
            paid_at: self.paid_at,
            amount_sats: self.amount_sats,
            memo: &self.memo,
            address: self.address.as_deref(),
            token_id: self.token_id.as_deref(),
            invoice,
        })?;
        Ok(TrustedEvent {
            payment_id: PaymentId::from(self.id),
            // xid8 values start at 3 and fit in i64 for the life of any cluster.
            xid: self.xid as u64,
            rooms: self.rooms(),
            frame: json.into(),
        })
    }
}

/// Reloads payments by id and builds their events, in the order of `ids`.
/// Ids that name no committed row are absent from the result: a forged or
/// stale notification yields nothing. Invoice totals are those committed when
/// the query runs, which may already include later payments.
pub async fn reload(
    db: impl PgExecutor<'_>,
    ids: &[PaymentId],
) -> Result<Vec<TrustedEvent>, sqlx::Error> {
    let raw_ids: Vec<i64> = ids.iter().map(PaymentId::get).collect();
    let rows: Vec<ReloadedRow> = sqlx::query_as(&format!(
        "select {PAYMENT_COLUMNS}, p.xid::text::bigint as xid, \
                i.amount_sats as invoice_amount_sats, i.expires_at as invoice_expires_at, \
                i.memo as invoice_memo, t.paid_sats as invoice_paid_sats, now() as as_of \
         from payments p \
         left join invoices i on i.id = p.invoice_id \
         left join lateral ( \
             select coalesce(sum(q.amount_sats), 0)::bigint as paid_sats \
             from payments q where q.invoice_id = p.invoice_id \
         ) t on p.invoice_id is not null \
         where p.id = any($1)"
    ))
    .bind(&raw_ids)
    .fetch_all(db)
    .await?;
    let mut by_id: HashMap<i64, ReloadedRow> = rows.into_iter().map(|row| (row.id, row)).collect();
    let mut events = Vec::with_capacity(by_id.len());
    for id in ids {
        if let Some(row) = by_id.remove(&id.get()) {
            events.push(
                row.into_event()
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            );
        }
    }
    Ok(events)
}
