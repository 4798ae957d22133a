//! Addresses built from the fuzzer's bytes, so that the parser's accepting
//! paths are explored too (random text almost never has a valid checksum).
//!
//! The input picks a prefix, a version byte, a hash length, the padding bits
//! and a hash; a small encoder here writes the address with a correct
//! checksum. The oracle: `CashAddr::parse` accepts it exactly when it is the
//! one canonical spelling (known prefix, reserved version bit clear, size
//! bits matching the hash length, zero padding), in which case the result is
//! what the `cashaddr` crate's encoder writes. Then one edit (substitution,
//! swap of two neighbours) must make it refused, and changing one letter's
//! case must make it mixed case.
//!
//! Input layout: `[prefix+spelling, version, length, padding, edit position
//! (2 bytes), edit kind+char, hash...]`; short inputs are padded with zeros.

#![no_main]

use cashaddr::{ALLOWED_LENGTHS, CHARSET, CashEnc, HashType};
use libfuzzer_sys::fuzz_target;
use paywatch::address::{AddressError, CashAddr};

/// The three prefixes paywatch knows, then one it must refuse.
const PREFIXES: [&str; 4] = ["bitcoincash", "bchtest", "bchreg", "bitcoin"];

fuzz_target!(|data: &[u8]| {
    let byte = |n: usize| data.get(n).copied().unwrap_or(0);
    let prefix = PREFIXES[usize::from(byte(0) % 4)];
    let uppercase = byte(0) & 0x04 != 0;
    let elide = byte(0) & 0x08 != 0 && prefix == "bitcoincash";
    let version = byte(1);
    let len = if byte(2) & 0x80 == 0 {
        ALLOWED_LENGTHS[usize::from(byte(2) % 8)]
    } else {
        usize::from(byte(2) & 0x7f)
    };
    let padding = byte(3);
    let edit_at = usize::from(u16::from_le_bytes([byte(4), byte(5)]));
    let edit = byte(6);
    let rest = data.get(7..).unwrap_or_default();
    let hash: Vec<u8> = (0..len)
        .map(|n| rest.get(n).copied().unwrap_or(0))
        .collect();

    let mut body = Vec::with_capacity(len + 1);
    body.push(version);
    body.extend_from_slice(&hash);
    let (payload5, padding) = to_5_bits(&body, padding);
    let canonical = encode(prefix, &payload5);

    let size_matches =
        ALLOWED_LENGTHS.iter().position(|&l| l == len) == Some(usize::from(version & 0x07));
    let known_prefix = prefix != "bitcoin";
    let expect_ok = known_prefix && version & 0x80 == 0 && padding == 0 && size_matches;

    let mut text = canonical.clone();
    if elide {
        text.replace_range(..="bitcoincash".len(), "");
    }
    if uppercase {
        text = text.to_ascii_uppercase();
    }

    match CashAddr::parse(&text) {
        Ok(address) => {
            assert!(
                expect_ok,
                "accepted non-canonical {text:?} (version {version:#04x}, {len} bytes, padding {padding:#x})"
            );
            assert_eq!(address.as_str(), canonical, "{text:?}");
            let hash_type = HashType::try_from((version >> 3) & 0x0f).unwrap();
            let reference = hash.encode(prefix, hash_type).unwrap();
            assert_eq!(
                reference, canonical,
                "this target's encoder disagrees with cashaddr's"
            );
        }
        Err(e) => {
            assert!(!expect_ok, "refused canonical {text:?}: {e:?}");
            if !known_prefix {
                assert_eq!(e, AddressError::Prefix, "{text:?}");
            }
            return;
        }
    }

    // The same address under another network's prefix has a wrong checksum.
    if !elide {
        let other = PREFIXES[(usize::from(byte(0) % 4) + 1) % 3];
        let moved = canonical.replacen(prefix, other, 1);
        assert_eq!(
            CashAddr::parse(&moved),
            Err(AddressError::Invalid),
            "{moved:?}"
        );
    }

    // One edit in the payload: always detected by the BCH checksum (or as
    // mixed case).
    let start = text.find(':').map_or(0, |n| n + 1);
    let chars: Vec<u8> = text.bytes().collect();
    let payload_len = chars.len() - start;
    let at = start + edit_at % payload_len;
    let mut edited = chars.clone();
    match edit % 3 {
        0 => {
            let old = chars[at].to_ascii_lowercase();
            let pos = CHARSET.iter().position(|&c| c == old).unwrap();
            let step = 1 + usize::from(edit / 3) % 31;
            let new = CHARSET[(pos + step) % 32];
            edited[at] = if uppercase {
                new.to_ascii_uppercase()
            } else {
                new
            };
        }
        1 => {
            let next = start + (at - start + 1) % payload_len;
            edited.swap(at, next);
        }
        _ => {
            edited[at] ^= if chars[at].is_ascii_alphabetic() {
                0x20
            } else {
                0
            }
        }
    }
    if edited == chars {
        return;
    }
    let edited = String::from_utf8(edited).unwrap();
    let result = CashAddr::parse(&edited);
    if edit % 3 == 2 {
        // A case change is mixed case, unless that letter was the only one
        // (an elided payload that is all digits but one): then it is the
        // same address in the other case.
        let lower = edited.bytes().any(|b| b.is_ascii_lowercase());
        let upper = edited.bytes().any(|b| b.is_ascii_uppercase());
        if lower && upper {
            assert_eq!(result, Err(AddressError::MixedCase), "{edited:?}");
        } else {
            assert_eq!(
                result.as_ref().map(CashAddr::as_str),
                Ok(canonical.as_str())
            );
        }
    } else {
        assert!(result.is_err(), "{edited:?} (an edit of {text:?}) accepted");
    }
});

/// Regroups bytes into 5-bit groups, filling the last group's spare bits
/// with `padding` (masked to the spare width). Returns the groups and the
/// padding actually written.
fn to_5_bits(bytes: &[u8], padding: u8) -> (Vec<u8>, u8) {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(((acc >> bits) & 31) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    let mut written = 0;
    if bits > 0 {
        let spare = 5 - bits;
        written = padding & ((1 << spare) - 1);
        out.push((((acc << spare) as u8) | written) & 31);
    }
    (out, written)
}

/// `prefix:payload+checksum`, lowercase.
fn encode(prefix: &str, payload5: &[u8]) -> String {
    let mut input: Vec<u8> = prefix.bytes().map(|b| b & 0x1f).collect();
    input.push(0);
    input.extend_from_slice(payload5);
    input.extend_from_slice(&[0; 8]);
    let checksum = polymod(&input);
    let mut text = format!("{prefix}:");
    text.extend(payload5.iter().map(|&d| CHARSET[usize::from(d)] as char));
    text.extend(
        (0..8)
            .rev()
            .map(|i| CHARSET[((checksum >> (5 * i)) & 31) as usize] as char),
    );
    text
}

/// The CashAddr checksum (BCH code over GF(32)), from the specification.
fn polymod(values: &[u8]) -> u64 {
    const GENERATORS: [u64; 5] = [
        0x98_f2bc_8e61,
        0x79_b76d_99e2,
        0xf3_3e5f_b3c4,
        0xae_2eab_e2a8,
        0x1e_4f43_e470,
    ];
    let mut c: u64 = 1;
    for &d in values {
        let c0 = c >> 35;
        c = ((c & 0x07_ffff_ffff) << 5) ^ u64::from(d);
        for (bit, g) in GENERATORS.iter().enumerate() {
            if c0 & (1 << bit) != 0 {
                c ^= g;
            }
        }
    }
    c ^ 1
}
