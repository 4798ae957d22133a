//! Identifiers that arrive from outside (URL paths, NOTIFY payloads, CLI
//! arguments) and the newtypes they are parsed into at the edge. Past the edge,
//! holding one of these types is the proof that the text was well formed.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why an identifier was refused. The message is safe to show to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Not a UUID in one of the two accepted spellings.
    #[error("invoice id must be a UUID: 32 hex digits or the hyphenated 8-4-4-4-12 form")]
    InvoiceId,
    /// Not a transaction id.
    #[error("txid must be 64 lowercase hex digits")]
    Txid,
    /// Not a CashToken category id.
    #[error("token id must be a CashToken category: 64 lowercase hex digits")]
    TokenId,
}

/// An invoice's id: a UUID, accepted as 32 hex digits (the form the original
/// service used in its room paths) or hyphenated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InvoiceId(Uuid);

impl InvoiceId {
    /// Parses the two accepted spellings and nothing else: braced, URN and
    /// other forms that `Uuid` would also take are refused so that one invoice
    /// has exactly two names.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        match text.len() {
            32 | 36 => Uuid::try_parse(text)
                .map(InvoiceId)
                .map_err(|_| IdError::InvoiceId),
            _ => Err(IdError::InvoiceId),
        }
    }

    /// The UUID itself.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for InvoiceId {
    fn from(id: Uuid) -> Self {
        InvoiceId(id)
    }
}

impl fmt::Display for InvoiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for InvoiceId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        InvoiceId::parse(text)
    }
}

/// A payment row's id (the `payments.id` identity column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PaymentId(i64);

impl PaymentId {
    /// Reads a NOTIFY payload. Any role that can connect may NOTIFY any
    /// channel with any text, so the payload is only ever a hint: a positive
    /// decimal integer, without sign, spaces or leading zeros, or nothing.
    pub fn from_notify_payload(payload: &str) -> Option<Self> {
        let canonical = !payload.is_empty()
            && payload.len() <= 19
            && payload.bytes().all(|b| b.is_ascii_digit())
            && !payload.starts_with('0');
        if !canonical {
            return None;
        }
        payload.parse::<i64>().ok().map(PaymentId)
    }

    /// The integer value of the id.
    pub fn get(&self) -> i64 {
        self.0
    }
}

impl From<i64> for PaymentId {
    fn from(id: i64) -> Self {
        PaymentId(id)
    }
}

impl fmt::Display for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn is_lower_hex_64(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A transaction id: 64 lowercase hex digits, as the `payments.txid` check requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Txid(String);

impl Txid {
    /// Parses a txid.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        if is_lower_hex_64(text) {
            Ok(Txid(text.to_owned()))
        } else {
            Err(IdError::Txid)
        }
    }

    /// A random txid, for demos and tests that do not care which.
    pub fn random() -> Self {
        let bytes: [u8; 32] = rand::random();
        Txid(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The txid as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Txid {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Txid::parse(text)
    }
}

/// A CashToken category id: 64 lowercase hex digits, as the `payments.token_id`
/// check requires.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TokenId(String);

impl TokenId {
    /// Parses a token id.
    pub fn parse(text: &str) -> Result<Self, IdError> {
        if is_lower_hex_64(text) {
            Ok(TokenId(text.to_owned()))
        } else {
            Err(IdError::TokenId)
        }
    }

    /// The token id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TokenId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        TokenId::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invoice_id_accepts_simple_and_hyphenated_forms_only() {
        let simple = "67e5504410b1426f9247bb680e5fe0c8";
        let hyphenated = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert_eq!(
            InvoiceId::parse(simple).unwrap(),
            InvoiceId::parse(hyphenated).unwrap()
        );
        for bad in [
            "",
            "67e5504410b1426f9247bb680e5fe0c",
            "67e5504410b1426f9247bb680e5fe0cz",
            "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
            "urn:uuid:67e55044-10b1-426f-9247-bb680e5fe0c8",
            "../../etc/passwd",
        ] {
            assert_eq!(InvoiceId::parse(bad), Err(IdError::InvoiceId), "{bad}");
        }
    }

    #[test]
    fn notify_payload_is_a_bare_positive_integer_or_nothing() {
        assert_eq!(PaymentId::from_notify_payload("42"), Some(PaymentId(42)));
        assert_eq!(
            PaymentId::from_notify_payload("9223372036854775807"),
            Some(PaymentId(i64::MAX))
        );
        for bad in [
            "",
            "0",
            "042",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1.0",
            "9223372036854775808",
            "{\"id\":1}",
            "١",
        ] {
            assert_eq!(PaymentId::from_notify_payload(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn txid_and_token_id_are_64_lowercase_hex() {
        let ok = "a".repeat(64);
        assert!(Txid::parse(&ok).is_ok());
        assert!(TokenId::parse(&ok).is_ok());
        assert!(Txid::parse(&"A".repeat(64)).is_err());
        assert!(TokenId::parse(&"a".repeat(63)).is_err());
        assert!(Txid::parse(Txid::random().as_str()).is_ok());
    }
}
