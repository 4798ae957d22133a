//! CashAddr addresses: the names of address rooms and of `payments.address`.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// Network prefixes paywatch accepts. An address without a prefix is read as
/// `bitcoincash`, the mainnet prefix.
const PREFIXES: [&str; 3] = ["bitcoincash", "bchtest", "bchreg"];

/// Payload length bounds, in characters: a version byte plus a 20..=64-byte
/// hash in 5-bit groups, plus the 8-character checksum. Checking them first
/// also keeps text that could never be an address away from the decoder.
const MIN_PAYLOAD_CHARS: usize = 42;
const MAX_PAYLOAD_CHARS: usize = 112;

/// Why a text is not a CashAddr. The message is safe to show to a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Unknown network prefix.
    #[error("address prefix must be one of bitcoincash, bchtest, bchreg (or none)")]
    Prefix,
    /// Upper and lower case mixed, which CashAddr forbids.
    #[error("address must not mix upper and lower case")]
    MixedCase,
    /// Wrong length for any CashAddr.
    #[error("address has the wrong length for a CashAddr")]
    Length,
    /// Not in the CashAddr alphabet, or the checksum does not match.
    #[error("address is not a valid CashAddr (bad character or checksum)")]
    Invalid,
}

/// A CashAddr whose checksum was verified, kept in canonical form: lowercase,
/// with its network prefix (`bitcoincash:q...`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CashAddr(String);

impl CashAddr {
    /// Parses an address with or without its prefix, in all-lowercase or
    /// all-uppercase, and verifies the checksum against the prefix.
    pub fn parse(text: &str) -> Result<Self, AddressError> {
        let has_lower = text.bytes().any(|b| b.is_ascii_lowercase());
        let has_upper = text.bytes().any(|b| b.is_ascii_uppercase());
        if has_lower && has_upper {
            return Err(AddressError::MixedCase);
        }
        let lower = text.to_ascii_lowercase();
        let (prefix, payload) = lower.split_once(':').unwrap_or(("bitcoincash", &lower));
        if !PREFIXES.contains(&prefix) {
            return Err(AddressError::Prefix);
        }
        if !(MIN_PAYLOAD_CHARS..=MAX_PAYLOAD_CHARS).contains(&payload.len()) {
            return Err(AddressError::Length);
        }
        let canonical = format!("{prefix}:{payload}");
        let decoded = cashaddr::Payload::from_str(&canonical).map_err(|_| AddressError::Invalid)?;
        // The decoder ignores nonzero padding bits and the reserved version
        // bit, so a checksum-valid text can be a second spelling of another
        // address. Only the encoder's own spelling is accepted: one hash,
        // one room.
        if decoded.with_prefix(prefix) != canonical {
            return Err(AddressError::Invalid);
        }
        Ok(CashAddr(canonical))
    }

    /// The canonical text, as stored in `payments.address`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CashAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for CashAddr {
    type Err = AddressError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        CashAddr::parse(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from the CashAddr specification.
    const P2PKH: &str = "bitcoincash:qr6m7j9njldwwzlg9v7v53unlr4jkmx6eylep8ekg2";
    const P2SH_TESTNET: &str = "bchtest:pr6m7j9njldwwzlg9v7v53unlr4jkmx6eyvwc0uz5t";

    #[test]
    fn accepts_prefixed_bare_and_uppercase_forms_as_one_canonical_address() {
        let canonical = CashAddr::parse(P2PKH).unwrap();
        assert_eq!(canonical.as_str(), P2PKH);
        let bare = P2PKH.trim_start_matches("bitcoincash:");
        assert_eq!(CashAddr::parse(bare).unwrap(), canonical);
        assert_eq!(
            CashAddr::parse(&P2PKH.to_ascii_uppercase()).unwrap(),
            canonical
        );
        assert_eq!(
            CashAddr::parse(P2SH_TESTNET).unwrap().as_str(),
            P2SH_TESTNET
        );
    }

    #[test]
    fn refuses_bad_checksums_prefixes_case_and_lengths() {
        let flipped = P2PKH.replace("ekg2", "ekg3");
        assert_eq!(CashAddr::parse(&flipped), Err(AddressError::Invalid));
        let wrong_network = P2PKH.replace("bitcoincash:", "bchtest:");
        assert_eq!(CashAddr::parse(&wrong_network), Err(AddressError::Invalid));
        assert_eq!(
            CashAddr::parse(&P2PKH.replace("bitcoincash:", "litecoin:")),
            Err(AddressError::Prefix)
        );
        assert_eq!(
            CashAddr::parse(&P2PKH.replace("qr6m", "QR6M")),
            Err(AddressError::MixedCase)
        );
        for short in ["", "bitcoincash:", "q", "bitcoincash:qqqqqqqq"] {
            assert_eq!(CashAddr::parse(short), Err(AddressError::Length), "{short}");
        }
        assert_eq!(
            CashAddr::parse(&format!("bitcoincash:{}", "q".repeat(113))),
            Err(AddressError::Length)
        );
        assert_eq!(
            CashAddr::parse(&P2PKH.replace("qr6m", "br6m")),
            Err(AddressError::Invalid)
        );
    }
}
