//! The `?after=` query parameter of the room endpoints: a resume cursor the
//! client sends back, which it may have altered in any way.
//!
//! The input is tried twice: as the cursor text itself (lossy UTF-8), and
//! as a raw query string decoded the way axum's `Query` decodes it
//! (`form_urlencoded`, so percent escapes and `+` reach the parser), with
//! every value handed to `Cursor::parse`.
//!
//! An accepted cursor must print in a canonical form no longer than the
//! input (so it stays under the length cap) that re-parses to an equal
//! cursor, and be made of well-formed snapshots.

#![no_main]

use libfuzzer_sys::fuzz_target;
use paywatch::cursor::{Cursor, PgSnapshot};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Some(cursor) = check_cursor(&text) {
        check_variants(&cursor);
    }
    for part in text.split('~') {
        check_snapshot(part);
    }
    for (_, value) in form_urlencoded::parse(data) {
        if let Some(cursor) = check_cursor(&value) {
            check_variants(&cursor);
        }
    }
});

/// Cursors made of an accepted cursor's parts, so that the corner cases of
/// the text form (the same snapshot twice, `last` at zero) are tried as soon
/// as the fuzzer has any valid cursor, not only when it stumbles on them.
fn check_variants(cursor: &Cursor) {
    let (before, step) = (&cursor.before, &cursor.step);
    let (xid, id) = cursor.last;
    let variants = [
        (before, step, (0, 0)),
        (before, before, (xid, id)),
        (step, step, (xid, id)),
        (step, before, (xid, id)),
        (before, before, (0, 0)),
    ];
    for (before, step, (xid, id)) in variants {
        let text = format!("{before}~{step}~{xid}~{id}");
        let expected = Cursor {
            before: before.clone(),
            step: step.clone(),
            last: (xid, id),
        };
        assert_eq!(check_cursor(&text), Some(expected), "{text:?}");
    }
    let plain = before.to_string();
    assert_eq!(
        check_cursor(&plain),
        Some(Cursor::at(before.clone())),
        "{plain:?}"
    );
}

/// Checks a cursor text, and returns the cursor if it was accepted.
fn check_cursor(text: &str) -> Option<Cursor> {
    let cursor = Cursor::parse(text).ok()?;
    let shown = cursor.to_string();
    assert!(
        shown.len() <= text.len(),
        "{text:?} printed longer, as {shown:?}"
    );
    assert_eq!(
        Cursor::parse(&shown).as_ref(),
        Ok(&cursor),
        "{text:?} -> {shown:?}"
    );
    check_snapshot_value(&cursor.before);
    check_snapshot_value(&cursor.step);

    // Every part of a cursor is a snapshot of its own text.
    if !shown.contains('~') {
        assert_eq!(cursor.before, cursor.step);
        assert_eq!(cursor.last, (0, 0));
        assert_eq!(Cursor::at(cursor.before.clone()), cursor);
    }

    // What a cursor has seen: everything its `before` snapshot sees, and
    // within a transaction, ids up to `last` before those after it.
    let (xid, id) = cursor.last;
    let xids = [
        0,
        1,
        xid.saturating_sub(1),
        xid,
        xid.saturating_add(1),
        cursor.before.xmin(),
        cursor.before.xmin().saturating_sub(1),
        cursor.step.xmin(),
        cursor.step.xmin().saturating_sub(1),
        u64::MAX,
    ];
    for x in xids {
        for i in [
            i64::MIN,
            id.saturating_sub(1),
            id,
            id.saturating_add(1),
            i64::MAX,
        ] {
            let seen = cursor.has_seen(x, i);
            if cursor.before.sees(x) {
                assert!(seen, "{shown:?} has not seen ({x}, {i})");
            }
            if !cursor.before.sees(x) && !cursor.step.sees(x) {
                assert!(!seen, "{shown:?} has seen ({x}, {i})");
            }
            if seen && i > i64::MIN {
                assert!(
                    cursor.has_seen(x, i - 1),
                    "{shown:?}: ({x}, {i}) but not ({x}, {})",
                    i - 1
                );
            }
        }
        let at = Cursor::at(cursor.step.clone());
        assert_eq!(at.has_seen(x, id), cursor.step.sees(x));
    }
    Some(cursor)
}

fn check_snapshot(text: &str) {
    if let Ok(snapshot) = PgSnapshot::parse(text) {
        let shown = snapshot.to_string();
        assert!(
            shown.len() <= text.len(),
            "{text:?} printed longer, as {shown:?}"
        );
        check_snapshot_value(&snapshot);
    }
}

/// A parsed snapshot prints as text that parses back to it, and sees what
/// PostgreSQL's rules say: everything before `xmin`, nothing from `xmax` on,
/// none of the transactions in progress.
fn check_snapshot_value(snapshot: &PgSnapshot) {
    let shown = snapshot.to_string();
    assert_eq!(
        PgSnapshot::parse(&shown).as_ref(),
        Ok(snapshot),
        "{shown:?}"
    );
    let mut parts = shown.split(':');
    let xmin: u64 = parts.next().unwrap().parse().unwrap();
    let xmax: u64 = parts.next().unwrap().parse().unwrap();
    let xip: Vec<u64> = match parts.next().unwrap() {
        "" => Vec::new(),
        list => list.split(',').map(|x| x.parse().unwrap()).collect(),
    };
    assert_eq!(snapshot.xmin(), xmin);
    assert!(0 < xmin && xmin <= xmax, "{shown:?}");
    assert!(snapshot.sees(xmin - 1), "{shown:?}");
    assert!(!snapshot.sees(xmax), "{shown:?}");
    assert!(!snapshot.sees(u64::MAX), "{shown:?}");
    for pair in xip.windows(2) {
        assert!(pair[0] < pair[1], "{shown:?}");
    }
    for &x in &xip {
        assert!((xmin..xmax).contains(&x), "{shown:?}");
        assert!(!snapshot.sees(x), "{shown:?} sees {x}, in progress");
        if x + 1 < xmax && xip.binary_search(&(x + 1)).is_err() {
            assert!(snapshot.sees(x + 1), "{shown:?} does not see {}", x + 1);
        }
    }
}
