//! Invoices and payments as the database holds them: the rows, the totals,
//! the status a merchant sees, and the read queries shared by snapshots, the
//! HTTP API and the trusted reload.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::address::CashAddr;
use crate::ids::InvoiceId;

/// How far an invoice has been paid, as shown to merchants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    /// Nothing paid yet, not expired.
    Unpaid,
    /// Some but not all of the amount paid, not expired.
    PartiallyPaid,
    /// Exactly the amount paid.
    Paid,
    /// More than the amount paid.
    Overpaid,
    /// Less than the amount paid when `expires_at` passed.
    Expired,
}

impl InvoiceStatus {
    /// Status from the totals. A full payment always wins, even one that
    /// arrives after expiry: the money is there and the merchant must see it.
    pub fn from_totals(
        amount_sats: i64,
        paid_sats: i64,
        expires_at: DateTime<Utc>,
        as_of: DateTime<Utc>,
    ) -> Self {
        use std::cmp::Ordering::*;
        match paid_sats.cmp(&amount_sats) {
            Greater => InvoiceStatus::Overpaid,
            Equal => InvoiceStatus::Paid,
            Less if as_of >= expires_at => InvoiceStatus::Expired,
            Less if paid_sats > 0 => InvoiceStatus::PartiallyPaid,
            Less => InvoiceStatus::Unpaid,
        }
    }
}

/// An invoice with its totals, as clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct InvoiceView {
    /// The invoice id.
    pub id: InvoiceId,
    /// Amount asked for.
    pub amount_sats: i64,
    /// Sum of all committed payments of the invoice.
    pub paid_sats: i64,
    /// Status derived from the totals and the expiry.
    pub status: InvoiceStatus,
    /// When an incompletely paid invoice turns `expired`.
    pub expires_at: DateTime<Utc>,
    /// The merchant's memo (text, never HTML).
    pub memo: String,
    /// When the invoice was created.
    pub created_at: DateTime<Utc>,
    /// Canonical CashAddr the invoice is to be paid to, if it names one.
    pub address: Option<String>,
}

/// One payment, as clients see it in snapshots and the HTTP API.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct PaymentView {
    /// The payment's id; the same number is a live event's `event_id`.
    #[sqlx(rename = "id")]
    pub event_id: i64,
    /// Transaction id.
    pub txid: String,
    /// When the payment was recorded.
    pub paid_at: DateTime<Utc>,
    /// Amount paid.
    pub amount_sats: i64,
    /// The payer's memo (text, never HTML).
    pub memo: String,
    /// Receiving address, if any.
    pub address: Option<String>,
    /// CashToken category, if any.
    pub token_id: Option<String>,
    /// Invoice paid, if any.
    pub invoice_id: Option<Uuid>,
}

/// An invoice and all its payments, oldest first.
#[derive(Debug, Clone, Serialize)]
pub struct InvoiceWithPayments {
    /// The invoice and its totals.
    pub invoice: InvoiceView,
    /// Every committed payment of the invoice, oldest first.
    pub payments: Vec<PaymentView>,
}

#[derive(sqlx::FromRow)]
struct InvoiceRow {
    id: Uuid,
    amount_sats: i64,
    paid_sats: i64,
    expires_at: DateTime<Utc>,
    memo: String,
    created_at: DateTime<Utc>,
    address: Option<String>,
    as_of: DateTime<Utc>,
}

impl From<InvoiceRow> for InvoiceView {
    fn from(row: InvoiceRow) -> Self {
        InvoiceView {
            id: row.id.into(),
            amount_sats: row.amount_sats,
            paid_sats: row.paid_sats,
            status: InvoiceStatus::from_totals(
                row.amount_sats,
                row.paid_sats,
                row.expires_at,
                row.as_of,
            ),
            expires_at: row.expires_at,
            memo: row.memo,
            created_at: row.created_at,
            address: row.address,
        }
    }
}

/// Columns of a payment in the order `PaymentView` reads them.
pub(crate) const PAYMENT_COLUMNS: &str =
    "p.id, p.txid, p.paid_at, p.amount_sats, p.memo, p.address, p.token_id, p.invoice_id";

/// Loads an invoice with its totals and all its payments, in one snapshot of
/// the database (one REPEATABLE READ transaction), so the totals always equal
/// the sum of the payments returned.
pub async fn load_with_payments(
    pool: &PgPool,
    id: InvoiceId,
) -> Result<Option<InvoiceWithPayments>, sqlx::Error> {
    let mut tx = begin_consistent_read(pool).await?;
    let found = load_with_payments_in(&mut tx, id).await?;
    tx.commit().await?;
    Ok(found)
}

/// Starts a read-only REPEATABLE READ transaction: every query in it sees
/// the same snapshot.
pub(crate) async fn begin_consistent_read(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("set transaction isolation level repeatable read, read only")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// [`load_with_payments`] inside a transaction the caller holds.
pub(crate) async fn load_with_payments_in(
    tx: &mut PgConnection,
    id: InvoiceId,
) -> Result<Option<InvoiceWithPayments>, sqlx::Error> {
    let row: Option<InvoiceRow> = sqlx::query_as(
        "select i.id, i.amount_sats, i.expires_at, i.memo, i.created_at, i.address, now() as as_of, \
                (select coalesce(sum(q.amount_sats), 0)::bigint from payments q where q.invoice_id = i.id) as paid_sats \
         from invoices i where i.id = $1",
    )
    .bind(id.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let payments: Vec<PaymentView> = sqlx::query_as(&format!(
        "select {PAYMENT_COLUMNS} from payments p where p.invoice_id = $1 order by p.id"
    ))
    .bind(id.as_uuid())
    .fetch_all(&mut *tx)
    .await?;
    Ok(Some(InvoiceWithPayments {
        invoice: row.into(),
        payments,
    }))
}

/// Whether an invoice exists.
pub async fn exists(pool: &PgPool, id: InvoiceId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from invoices where id = $1)")
        .bind(id.as_uuid())
        .fetch_one(pool)
        .await
}

/// A new invoice's fields, already validated.
#[derive(Debug, Clone)]
pub struct NewInvoice {
    /// Amount to ask for; positive.
    pub amount_sats: i64,
    /// Merchant's memo.
    pub memo: String,
    /// Seconds until the invoice expires.
    pub expires_in_s: i64,
    /// Address the invoice is to be paid to, if any.
    pub address: Option<CashAddr>,
}

/// Inserts an invoice and returns it with its (zero) totals.
///
/// Without an address the INSERT names only `amount_sats`, `memo` and
/// `expires_at`, the columns a reader role with `create_invoices=on` may
/// write (`sql/paywatch_reader.sql`).
pub async fn create(pool: &PgPool, new: &NewInvoice) -> Result<InvoiceView, sqlx::Error> {
    let address = new.address.as_ref();
    const RETURNING: &str = "returning id, amount_sats, 0::bigint as paid_sats, expires_at, memo, \
                             created_at, address, now() as as_of";
    let query = match address {
        None => format!(
            "insert into invoices (amount_sats, memo, expires_at) \
             values ($1, $2, now() + make_interval(secs => $3)) {RETURNING}"
        ),
        Some(_) => format!(
            "insert into invoices (amount_sats, memo, expires_at, address) \
             values ($1, $2, now() + make_interval(secs => $3), $4) {RETURNING}"
        ),
    };
    let mut insert = sqlx::query_as::<_, InvoiceRow>(&query)
        .bind(new.amount_sats)
        .bind(&new.memo)
        .bind(new.expires_in_s as f64);
    if let Some(address) = address {
        insert = insert.bind(address.as_str());
    }
    Ok(insert.fetch_one(pool).await?.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn status_follows_totals_and_expiry() {
        let now = Utc::now();
        let later = now + Duration::minutes(5);
        let earlier = now - Duration::minutes(5);
        use InvoiceStatus::*;
        assert_eq!(InvoiceStatus::from_totals(100, 0, later, now), Unpaid);
        assert_eq!(
            InvoiceStatus::from_totals(100, 40, later, now),
            PartiallyPaid
        );
        assert_eq!(InvoiceStatus::from_totals(100, 100, later, now), Paid);
        assert_eq!(InvoiceStatus::from_totals(100, 101, later, now), Overpaid);
        assert_eq!(InvoiceStatus::from_totals(100, 0, earlier, now), Expired);
        assert_eq!(InvoiceStatus::from_totals(100, 40, earlier, now), Expired);
        assert_eq!(InvoiceStatus::from_totals(100, 100, earlier, now), Paid);
    }
}
