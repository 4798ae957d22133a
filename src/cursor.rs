//! Resume cursors, and the PostgreSQL snapshots they are made of.
//!
//! A cursor names exactly the set of a room's payments a client has seen,
//! in terms the database can answer later, even after paywatch restarts:
//!
//! - `seen(A, B, x, i)` = every payment visible in snapshot `A`, plus the
//!   payments visible in `B` but not in `A` whose `(xid, id)` is at most
//!   `(x, i)`.
//!
//! The listener delivers payments in steps: each step takes a snapshot `S_k`
//! and delivers the payments visible in `S_k` but not in `S_k-1`, ordered by
//! `(xid, id)`. The event of payment `(x, i)` in step k carries
//! `(S_k-1, S_k, x, i)`: everything earlier steps delivered, plus this step up
//! to and including itself. A snapshot frame read under snapshot `C` carries
//! `(C, C, 0, 0)`, written as plain `C`. Because a snapshot lists the
//! transactions in progress when it was taken (at most one per connection),
//! a cursor stays small however busy the database is.
//!
//! Text form: a snapshot is `xmin:xmax:xip,xip,...` (PostgreSQL's own
//! `pg_snapshot` text); a cursor is `A` or `A~B~x~i`. Clients treat it as
//! opaque.

use std::fmt;

/// Longest cursor text accepted.
const MAX_CURSOR_LEN: usize = 16 * 1024;

/// A number as this server writes it: decimal digits, no sign, no leading
/// zero. One spelling per cursor, as for every other identifier.
fn number(text: &str) -> Result<u64, CursorError> {
    let canonical = !text.is_empty()
        && text.len() <= 20
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if !canonical {
        return Err(CursorError);
    }
    text.parse().map_err(|_| CursorError)
}

/// A PostgreSQL snapshot (`pg_snapshot`): which transactions' effects it sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgSnapshot {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
}

/// Why a cursor was refused. Safe to show to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`after` is not a cursor this server issued")]
pub struct CursorError;

impl PgSnapshot {
    /// Parses PostgreSQL's text form `xmin:xmax:xip,...`, checking that it is
    /// well formed (`xmin <= xip < xmax`, ascending).
    pub fn parse(text: &str) -> Result<Self, CursorError> {
        let mut parts = text.split(':');
        let (Some(xmin), Some(xmax), Some(xip), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(CursorError);
        };
        let (xmin, xmax) = (number(xmin)?, number(xmax)?);
        let xip = if xip.is_empty() {
            Vec::new()
        } else {
            xip.split(',').map(number).collect::<Result<Vec<_>, _>>()?
        };
        let ordered = xip.windows(2).all(|w| w[0] < w[1]);
        let bounded = xip.iter().all(|x| (xmin..xmax).contains(x));
        if xmin == 0 || xmin > xmax || !ordered || !bounded {
            return Err(CursorError);
        }
        Ok(PgSnapshot { xmin, xmax, xip })
    }

    /// The snapshot of the current statement, or of the current transaction
    /// under REPEATABLE READ.
    pub async fn current(db: impl sqlx::PgExecutor<'_>) -> Result<Self, sqlx::Error> {
        let text: String = sqlx::query_scalar("select pg_current_snapshot()::text")
            .fetch_one(db)
            .await?;
        PgSnapshot::parse(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }

    /// Whether a committed transaction `xid` is visible in this snapshot.
    pub fn sees(&self, xid: u64) -> bool {
        xid < self.xmin || (xid < self.xmax && self.xip.binary_search(&xid).is_err())
    }

    /// Oldest transaction that may be invisible to this snapshot.
    pub fn xmin(&self) -> u64 {
        self.xmin
    }
}

impl fmt::Display for PgSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.xmin, self.xmax)?;
        for (n, xid) in self.xip.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{xid}")?;
        }
        Ok(())
    }
}

/// Where a client stands in its room's stream (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Everything visible here has been seen.
    pub before: PgSnapshot,
    /// Of what is visible here and not in `before`...
    pub step: PgSnapshot,
    /// ...everything up to this `(xid, id)` has been seen.
    pub last: (u64, i64),
}

impl Cursor {
    /// The cursor of a snapshot frame read under `snapshot`.
    pub fn at(snapshot: PgSnapshot) -> Self {
        Cursor {
            before: snapshot.clone(),
            step: snapshot,
            last: (0, 0),
        }
    }

    /// Parses a cursor from the `after` query parameter.
    pub fn parse(text: &str) -> Result<Self, CursorError> {
        if text.len() > MAX_CURSOR_LEN {
            return Err(CursorError);
        }
        let parts: Vec<&str> = text.split('~').collect();
        match parts.as_slice() {
            [snapshot] => Ok(Cursor::at(PgSnapshot::parse(snapshot)?)),
            [before, step, xid, id] => {
                let xid = number(xid)?;
                let id = i64::try_from(number(id)?).map_err(|_| CursorError)?;
                Ok(Cursor {
                    before: PgSnapshot::parse(before)?,
                    step: PgSnapshot::parse(step)?,
                    last: (xid, id),
                })
            }
            _ => Err(CursorError),
        }
    }

    /// Whether the payment `(xid, id)` is among those seen.
    pub fn has_seen(&self, xid: u64, id: i64) -> bool {
        self.before.sees(xid) || (self.step.sees(xid) && (xid, id) <= self.last)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.before == self.step && self.last == (0, 0) {
            write!(f, "{}", self.before)
        } else {
            let (xid, id) = self.last;
            write!(f, "{}~{}~{xid}~{id}", self.before, self.step)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_text_round_trips_and_visibility_follows_postgres_rules() {
        let snapshot = PgSnapshot::parse("10:20:12,15").unwrap();
        assert_eq!(snapshot.to_string(), "10:20:12,15");
        assert!(snapshot.sees(9));
        assert!(snapshot.sees(11));
        assert!(!snapshot.sees(12));
        assert!(!snapshot.sees(15));
        assert!(snapshot.sees(19));
        assert!(!snapshot.sees(20));
        assert_eq!(PgSnapshot::parse("10:10:").unwrap().to_string(), "10:10:");
    }

    #[test]
    fn malformed_snapshots_and_cursors_are_refused() {
        for bad in [
            "",
            "10:20",
            "10:20:1",
            "20:10:",
            "10:20:15,12",
            "10:20:12,12",
            "0:0:",
            "a:b:",
            "10:20:12:13",
            "-1:20:",
            "10: 20:",
        ] {
            assert_eq!(PgSnapshot::parse(bad), Err(CursorError), "{bad:?}");
        }
        for bad in [
            "10:20:~10:20:",
            "10:20:~10:20:~1",
            "10:20:~10:20:~x~1",
            "10:20:~10:20:~1~2~3",
        ] {
            assert_eq!(Cursor::parse(bad), Err(CursorError), "{bad:?}");
        }
        assert_eq!(
            Cursor::parse(&"1".repeat(MAX_CURSOR_LEN + 1)),
            Err(CursorError)
        );
    }

    #[test]
    fn cursor_round_trips_and_names_what_was_seen() {
        let cursor = Cursor::parse("10:20:12~10:30:12,25~22~7").unwrap();
        assert_eq!(cursor.to_string(), "10:20:12~10:30:12,25~22~7");
        assert!(cursor.has_seen(11, 100), "visible before");
        assert!(cursor.has_seen(18, 100), "visible before, whatever its id");
        assert!(!cursor.has_seen(12, 1), "in progress in both");
        assert!(cursor.has_seen(22, 7), "the last one itself");
        assert!(cursor.has_seen(22, 6), "earlier in the step");
        assert!(cursor.has_seen(21, 100), "earlier transaction in the step");
        assert!(!cursor.has_seen(22, 8), "after the last in step order");
        assert!(!cursor.has_seen(24, 1), "later in the step");
        assert!(!cursor.has_seen(25, 1), "not visible in the step");
        let plain = Cursor::parse("10:20:12").unwrap();
        assert_eq!(plain.to_string(), "10:20:12");
        assert!(plain.has_seen(19, 1) && !plain.has_seen(12, 1));
    }
}
