//! The trusted event: a payment reloaded from the database, with the rooms it
//! belongs to and its wire frame, serialized once.
//!
//! [`TrustedEvent`] has private fields and no public constructor. The only
//! code that builds one is in this module ([`Step`] and [`backlog`]),
//! from rows it has just read from the `payments` and `invoices` tables. The hub only accepts this
//! type, so nothing else in the process (the WebSocket layer included) can put
//! a frame into a room. `tests/compile_fail/` proves that code outside this
//! crate cannot build one either.

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::address::CashAddr;
use crate::cursor::{Cursor, PgSnapshot};
use crate::ids::{PaymentId, TokenId};
use crate::invoice::{self, InvoiceStatus, PAYMENT_COLUMNS};
use crate::rooms::Room;

/// A committed payment, reloaded from the database, ready to be pushed.
#[derive(Debug)]
pub struct TrustedEvent {
    payment_id: PaymentId,
    xid: u64,
    paid_at: DateTime<Utc>,
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

    /// When the payment was recorded (`payments.paid_at`).
    pub fn paid_at(&self) -> DateTime<Utc> {
        self.paid_at
    }

    /// Rooms the payment goes to, derived from the reloaded row.
    pub fn rooms(&self) -> &[Room] {
        &self.rooms
    }

    /// The `payment_received` frame, with its resume cursor, serialized once
    /// for every subscriber.
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
    /// The reading statement's own snapshot, on a step's first page only.
    #[sqlx(default)]
    step_snapshot: Option<String>,
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
    cursor: String,
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

    fn into_event(self, cursor: &Cursor) -> Result<TrustedEvent, serde_json::Error> {
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
            cursor: cursor.to_string(),
        })?;
        Ok(TrustedEvent {
            payment_id: PaymentId::from(self.id),
            // xid8 values start at 3 and fit in i64 for the life of any cluster.
            xid: self.xid as u64,
            paid_at: self.paid_at,
            rooms: self.rooms(),
            frame: json.into(),
        })
    }
}

/// The columns of a [`ReloadedRow`], from `payments p`, `invoices i` and the
/// totals `t`.
const ROW_SELECT: &str = "p.xid::text::bigint as xid, \
    i.amount_sats as invoice_amount_sats, i.expires_at as invoice_expires_at, \
    i.memo as invoice_memo, t.paid_sats as invoice_paid_sats, now() as as_of \
    from payments p \
    left join invoices i on i.id = p.invoice_id \
    left join lateral ( \
        select coalesce(sum(q.amount_sats), 0)::bigint as paid_sats \
        from payments q where q.invoice_id = p.invoice_id \
    ) t on p.invoice_id is not null";

fn encode_error(error: serde_json::Error) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(error))
}

/// The snapshot that delivery starts from: payments visible in it are
/// already committed and reach clients through snapshots, not as events.
pub async fn starting_point(pool: &PgPool) -> Result<PgSnapshot, sqlx::Error> {
    PgSnapshot::current(pool).await
}

/// One delivery step: the payments visible in a new snapshot but not in
/// `before`, read in pages ordered by `(xid, id)`, each with its cursor.
///
/// Visibility only grows, so every committed payment becomes visible in
/// exactly one step: nothing is delivered twice, and nothing is skipped,
/// whatever order transactions commit in and whether or not their
/// notifications arrived. Invoice totals are those committed when a page is
/// read, which may already include later payments.
///
/// The step's snapshot is that of the statement reading its first page
/// (`pg_current_snapshot()` there is the statement's own), so a step whose
/// payments fit in one page costs one query.
#[derive(Debug)]
pub struct Step {
    before: PgSnapshot,
    /// Known once the first page has been read (and found rows).
    step: Option<PgSnapshot>,
    last: (u64, i64),
    done: bool,
}

impl Step {
    /// A step from `before`; nothing is read until [`Step::next_page`].
    pub fn begin(before: PgSnapshot) -> Self {
        Step {
            before,
            step: None,
            last: (0, 0),
            done: false,
        }
    }

    /// The next page of at most `page` events; empty once the step is done.
    pub async fn next_page(
        &mut self,
        pool: &PgPool,
        page: i64,
    ) -> Result<Vec<TrustedEvent>, sqlx::Error> {
        if self.done {
            return Ok(Vec::new());
        }
        // Payments `before` does not see have `xid >= before.xmin`, and ids
        // are positive, so the page starts after the later of `(xmin, 0)`
        // and the last row delivered. That is one row comparison: given a
        // separate `xid >=` key as well, PostgreSQL starts the index scan at
        // the row comparison and checks the other key on every entry, so
        // each step read the whole (xid, id) index.
        let start = self.last.max((self.before.xmin(), 0));
        let rows: Vec<ReloadedRow> = match &self.step {
            // The first page: the rows this statement sees are exactly those
            // its snapshot sees, which becomes the step's.
            None => {
                sqlx::query_as(&format!(
                    "select {PAYMENT_COLUMNS}, pg_current_snapshot()::text as step_snapshot, \
                     {ROW_SELECT} \
                     where (p.xid, p.id) > ($1::text::xid8, $2) \
                       and not pg_visible_in_snapshot(p.xid, $3::text::pg_snapshot) \
                     order by p.xid, p.id \
                     limit $4"
                ))
                .bind(start.0.to_string())
                .bind(start.1)
                .bind(self.before.to_string())
                .bind(page)
                .fetch_all(pool)
                .await?
            }
            // Later pages: a later statement sees at least everything the
            // step's snapshot sees; the filter keeps exactly that.
            Some(step) => {
                sqlx::query_as(&format!(
                    "select {PAYMENT_COLUMNS}, {ROW_SELECT} \
                     where (p.xid, p.id) > ($1::text::xid8, $2) \
                       and pg_visible_in_snapshot(p.xid, $3::text::pg_snapshot) \
                       and not pg_visible_in_snapshot(p.xid, $4::text::pg_snapshot) \
                     order by p.xid, p.id \
                     limit $5"
                ))
                .bind(start.0.to_string())
                .bind(start.1)
                .bind(step.to_string())
                .bind(self.before.to_string())
                .bind(page)
                .fetch_all(pool)
                .await?
            }
        };
        self.done = (rows.len() as i64) < page;
        let Some(first) = rows.first() else {
            return Ok(Vec::new());
        };
        if self.step.is_none() {
            let text = first
                .step_snapshot
                .as_deref()
                .ok_or_else(|| sqlx::Error::ColumnNotFound("step_snapshot".into()))?;
            self.step =
                Some(PgSnapshot::parse(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?);
        }
        let step = self.step.clone().unwrap_or_else(|| self.before.clone());
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            self.last = (row.xid as u64, row.id);
            let cursor = Cursor {
                before: self.before.clone(),
                step: step.clone(),
                last: self.last,
            };
            events.push(row.into_event(&cursor).map_err(encode_error)?);
        }
        Ok(events)
    }

    /// The snapshot every payment of this step is visible in: the next
    /// step's `before`. A step that found nothing leaves `before` as it was
    /// (still correct, since visibility only grows).
    pub fn into_snapshot(self) -> PgSnapshot {
        self.step.unwrap_or(self.before)
    }
}

/// What a client resuming from a cursor has missed.
#[derive(Debug)]
pub enum Backlog {
    /// The room's payments the cursor has not seen, in delivery order, each
    /// with its cursor. Live events the returned snapshot sees are covered.
    Missed(Vec<TrustedEvent>, PgSnapshot),
    /// More than the limit: the client should start over from a snapshot.
    TooFarBehind,
}

/// The payments of `room` that `cursor` has not seen, read in one
/// REPEATABLE READ transaction, at most `limit` of them.
pub async fn backlog(
    pool: &PgPool,
    room: &Room,
    cursor: &Cursor,
    limit: i64,
) -> Result<Backlog, sqlx::Error> {
    let (invoice, address, token) = match room {
        Room::Invoice(id) => (Some(id.as_uuid()), None, None),
        Room::Address(address) => (None, Some(address.as_str()), None),
        Room::AddressToken(address, token) => (None, Some(address.as_str()), Some(token.as_str())),
    };
    let mut tx = invoice::begin_consistent_read(pool).await?;
    let now = PgSnapshot::current(&mut *tx).await?;
    let (x, i) = cursor.last;
    let rows: Vec<ReloadedRow> = sqlx::query_as(&format!(
        "select {PAYMENT_COLUMNS}, {ROW_SELECT} \
         where ($1::uuid is null or p.invoice_id = $1) \
           and ($2::text is null or p.address = $2) \
           and ($3::text is null or p.token_id = $3) \
           and p.xid >= $4::text::xid8 \
           and not pg_visible_in_snapshot(p.xid, $5::text::pg_snapshot) \
           and not (pg_visible_in_snapshot(p.xid, $6::text::pg_snapshot) \
                    and (p.xid, p.id) <= ($7::text::xid8, $8)) \
         order by pg_visible_in_snapshot(p.xid, $6::text::pg_snapshot) desc, p.xid, p.id \
         limit $9"
    ))
    .bind(invoice)
    .bind(address)
    .bind(token)
    .bind(cursor.before.xmin().to_string())
    .bind(cursor.before.to_string())
    .bind(cursor.step.to_string())
    .bind(x.to_string())
    .bind(i)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    if rows.len() as i64 > limit {
        return Ok(Backlog::TooFarBehind);
    }
    // Rows of the cursor's own step keep its snapshots; rows after it belong
    // to a step from the cursor's step to now.
    let events = rows
        .into_iter()
        .map(|row| {
            let xid = row.xid as u64;
            let cursor = if cursor.step.sees(xid) {
                Cursor {
                    last: (xid, row.id),
                    ..cursor.clone()
                }
            } else {
                Cursor {
                    before: cursor.step.clone(),
                    step: now.clone(),
                    last: (xid, row.id),
                }
            };
            row.into_event(&cursor)
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(encode_error)?;
    Ok(Backlog::Missed(events, now))
}
