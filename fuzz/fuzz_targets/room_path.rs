//! Room path segments: `/ws/jpp/invoice/{id}/`, `/ws/watch/address/{address}/`
//! and `/ws/watch/address/{address}/{token_id}/`. axum percent-decodes a
//! segment into any text at all, so every parser is fed the whole input, and
//! an input with a `/` is also split the way the two-segment route splits it.
//!
//! Beyond "no panic", whatever a parser accepts must be canonical: it
//! displays in the one stored spelling and re-parses to itself. The first 16
//! bytes are also read as a UUID, whose two accepted names (and only those)
//! must parse to it. (Valid addresses are built in `cashaddr_encoded`.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use paywatch::address::CashAddr;
use paywatch::ids::{InvoiceId, TokenId, Txid};
use paywatch::rooms::Room;

const PREFIXES: [&str; 3] = ["bitcoincash", "bchtest", "bchreg"];
const CASHADDR_CHARSET: &str = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    check_invoice_id(&text);
    let address = check_address(&text);
    let token = check_token_id(&text);
    check_txid(&text);
    if let Ok(id) = InvoiceId::parse(&text) {
        assert_eq!(Room::Invoice(id).to_string(), format!("invoice:{id}"));
    }
    if let Some(address) = &address {
        assert_eq!(
            Room::Address(address.clone()).to_string(),
            format!("address:{address}")
        );
    }
    // A token id and an address are never the same text: an accepted
    // address has a colon, a token id has none.
    assert!(address.is_none() || token.is_none(), "{text:?}");

    // The first 16 bytes as a UUID: both of its names are accepted, in
    // either case, and no other spelling is.
    if let Some(bytes) = data.get(..16) {
        let uuid = uuid::Uuid::from_slice(bytes).unwrap();
        let id = InvoiceId::from(uuid);
        let hyphenated = uuid.hyphenated().to_string();
        let simple = uuid.simple().to_string();
        for name in [&hyphenated, &simple] {
            assert_eq!(InvoiceId::parse(name), Ok(id), "{name:?}");
            assert_eq!(
                InvoiceId::parse(&name.to_ascii_uppercase()),
                Ok(id),
                "{name:?}"
            );
            check_invoice_id(name);
        }
        assert_eq!(id.to_string(), hyphenated);
        for other in [
            format!("{{{hyphenated}}}"),
            format!("{{{simple}}}"),
            uuid.urn().to_string(),
            format!(" {simple}"),
            format!("{hyphenated}/"),
            hyphenated.replacen('-', "", 1),
        ] {
            assert!(InvoiceId::parse(&other).is_err(), "{other:?} accepted");
        }
    }

    // The two-segment route: `{address}/{token_id}`.
    if let Some((address, token)) = text.split_once('/')
        && let (Some(address), Some(token)) = (check_address(address), check_token_id(token))
    {
        let room = Room::AddressToken(address.clone(), token.clone());
        assert_eq!(
            room.to_string(),
            format!("address:{address}/{}", token.as_str())
        );
    }
});

/// An accepted invoice id has exactly two names: its hyphenated and its
/// simple (32 hex digits) spelling, in either case.
fn check_invoice_id(text: &str) {
    let Ok(id) = InvoiceId::parse(text) else {
        return;
    };
    let shown = id.to_string();
    assert_eq!(shown.len(), 36, "{text:?} -> {shown:?}");
    for (n, b) in shown.bytes().enumerate() {
        if matches!(n, 8 | 13 | 18 | 23) {
            assert_eq!(b, b'-', "{text:?} -> {shown:?}");
        } else {
            assert!(
                matches!(b, b'0'..=b'9' | b'a'..=b'f'),
                "{text:?} -> {shown:?}"
            );
        }
    }
    let simple = id.as_uuid().simple().to_string();
    let lower = text.to_ascii_lowercase();
    assert!(
        lower == shown || lower == simple,
        "{text:?} accepted as {shown:?}, which is not one of its two spellings"
    );
    assert_eq!(InvoiceId::parse(&shown), Ok(id), "{text:?}");
    assert_eq!(InvoiceId::parse(&simple), Ok(id), "{text:?}");
    assert_eq!(
        InvoiceId::parse(&shown.to_ascii_uppercase()),
        Ok(id),
        "{text:?}"
    );
    assert_eq!(shown.parse::<InvoiceId>(), Ok(id));
}

/// An accepted address is kept lowercase with its network prefix, re-parses
/// to itself, and is what the input says once case and the default prefix
/// are put aside.
fn check_address(text: &str) -> Option<CashAddr> {
    let address = CashAddr::parse(text).ok()?;
    let canonical = address.as_str();
    assert_eq!(address.to_string(), canonical);
    let (prefix, payload) = canonical
        .split_once(':')
        .unwrap_or_else(|| panic!("{text:?} -> {canonical:?} has no prefix"));
    assert!(PREFIXES.contains(&prefix), "{text:?} -> {canonical:?}");
    assert!(
        (42..=112).contains(&payload.len()),
        "{text:?} -> {canonical:?}"
    );
    assert!(
        payload.chars().all(|c| CASHADDR_CHARSET.contains(c)),
        "{text:?} -> {canonical:?} is not lowercase CashAddr"
    );
    let lower = text.to_ascii_lowercase();
    assert!(
        lower == canonical || (prefix == "bitcoincash" && lower == payload),
        "{text:?} accepted as {canonical:?}"
    );
    assert_eq!(CashAddr::parse(canonical).as_ref(), Ok(&address));
    assert_eq!(
        CashAddr::parse(&canonical.to_ascii_uppercase()).as_ref(),
        Ok(&address)
    );
    if prefix == "bitcoincash" {
        assert_eq!(CashAddr::parse(payload).as_ref(), Ok(&address));
    }
    // The reference decoder agrees, and re-encodes to the same text.
    let decoded: cashaddr::Payload = canonical
        .parse()
        .unwrap_or_else(|e| panic!("{canonical:?} accepted but cashaddr says {e:?}"));
    assert!(cashaddr::ALLOWED_LENGTHS.contains(&decoded.len()));
    assert_eq!(decoded.with_prefix(prefix), canonical);
    Some(address)
}

/// A token id is accepted exactly when it is 64 lowercase hex digits, and is
/// kept as given.
fn check_token_id(text: &str) -> Option<TokenId> {
    let Ok(token) = TokenId::parse(text) else {
        assert!(!is_lower_hex_64(text), "{text:?} refused");
        return None;
    };
    assert_eq!(token.as_str(), text);
    assert!(is_lower_hex_64(text), "{text:?}");
    assert_eq!(TokenId::parse(token.as_str()).as_ref(), Ok(&token));
    assert_eq!(
        Txid::parse(text).map(|t| t.as_str().to_owned()).as_deref(),
        Ok(text)
    );
    Some(token)
}

/// The same rule as a token id.
fn check_txid(text: &str) {
    match Txid::parse(text) {
        Ok(txid) => {
            assert_eq!(txid.as_str(), text);
            assert!(is_lower_hex_64(text), "{text:?}");
            assert_eq!(Txid::parse(txid.as_str()).as_ref(), Ok(&txid));
        }
        Err(_) => assert!(!is_lower_hex_64(text), "{text:?} refused"),
    }
}

/// The reference: what the `payments.txid` and `payments.token_id` checks allow.
fn is_lower_hex_64(text: &str) -> bool {
    text.len() == 64
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}
