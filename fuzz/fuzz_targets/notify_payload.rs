//! NOTIFY payloads: any role that can connect may `NOTIFY paywatch_payments`
//! with any text (up to 8000 bytes), so `PaymentId::from_notify_payload` sees
//! arbitrary text. It must accept exactly the canonical spelling of a
//! positive `i64`, and an accepted id prints back as the payload.

#![no_main]

use libfuzzer_sys::fuzz_target;
use paywatch::ids::PaymentId;

fuzz_target!(|data: &[u8]| {
    // PostgreSQL hands the listener text; invalid UTF-8 cannot arrive, but
    // its lossy form is still text worth trying.
    let payload = String::from_utf8_lossy(data);
    check(&payload);

    // The same bytes read as a number, so every positive id is reachable
    // even from short inputs.
    if let Some(bytes) = data.get(..8) {
        let n = i64::from_le_bytes(bytes.try_into().unwrap());
        let text = n.to_string();
        let id = PaymentId::from_notify_payload(&text);
        if n > 0 {
            assert_eq!(id, Some(PaymentId::from(n)), "{text:?}");
        } else {
            assert_eq!(id, None, "{text:?}");
        }
        check(&text);
        check(&format!("0{text}"));
        check(&format!("+{text}"));
        check(&format!("{text} "));
    }
});

fn check(payload: &str) {
    let id = PaymentId::from_notify_payload(payload);
    assert_eq!(id.map(|id| id.get()), reference(payload), "{payload:?}");
    if let Some(id) = id {
        assert!(id.get() > 0, "{payload:?}");
        assert_eq!(id.to_string(), payload);
        assert_eq!(PaymentId::from_notify_payload(&id.to_string()), Some(id));
    }
}

/// The rule written out differently: `[1-9][0-9]*` whose value fits an i64.
fn reference(payload: &str) -> Option<i64> {
    let mut digits = payload.chars();
    let first = digits.next()?;
    if !('1'..='9').contains(&first) {
        return None;
    }
    let mut value = i64::from(first as u8 - b'0');
    for c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_add(i64::from(c as u8 - b'0'))?;
    }
    Some(value)
}
