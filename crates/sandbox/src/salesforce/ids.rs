//! Salesforce-style record ids: the 15-character case-sensitive key and its 18-character
//! case-insensitive form.
//!
//! What it is: id minting for the sandbox (key prefix + pod + base-62 counter) and the public
//! suffix algorithm that turns a 15-character id into an 18-character one and back.
//! What it is not: a model of real pods, instances or every key prefix; the sandbox only mints
//! the prefixes listed below.
//!
//! Vendor doc: https://help.salesforce.com/s/articleView?id=000385008 ("What are Salesforce IDs
//! composed of?") and the `CASESAFEID()` formula function.

/// Key prefix of Contact ids.
pub const CONTACT_PREFIX: &str = "003";
/// Key prefix of Account ids (only validated in `AccountId`, never minted).
pub const ACCOUNT_PREFIX: &str = "001";
/// Key prefix of User ids (the integration user and the simulated human).
pub const USER_PREFIX: &str = "005";
/// Key prefix of Organization ids.
pub const ORG_PREFIX: &str = "00D";
/// Key prefix of query cursors (`nextRecordsUrl` locators).
pub const QUERY_LOCATOR_PREFIX: &str = "01g";

/// Characters 4–5 of every minted id. Real ids carry the pod here; any two alphanumerics do.
const POD: &str = "8d";
/// Alphabet of the 3-character suffix: value 0–25 → `A`–`Z`, 26–31 → `0`–`5`.
const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";
/// Base-62 digits in ASCII order, so that fixed-width counters sort like numbers.
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Mints the 18-character id of record number `n` with the given 3-character key prefix:
/// prefix (3) + pod (2) + reserved `0` (1) + base-62 counter (9) + suffix (3).
pub fn mint(prefix: &str, n: u64) -> String {
    let mut digits = [b'0'; 9];
    let mut rest = n;
    for slot in digits.iter_mut().rev() {
        // `rest % 62` is below 62, so the index is always in range.
        *slot = BASE62[(rest % 62) as usize];
        rest /= 62;
    }
    let id15 = format!("{prefix}{POD}0{}", String::from_utf8_lossy(&digits));
    let suffix = checksum_suffix(&id15).unwrap_or_default();
    format!("{id15}{suffix}")
}

/// The 3-character case-safety suffix of a 15-character id, or `None` if `id15` is not exactly
/// 15 ASCII alphanumerics.
///
/// Each 5-character chunk becomes a 5-bit number whose bit *i* is set when character *i* of the
/// chunk is an uppercase letter; the number indexes [`SUFFIX_ALPHABET`].
pub fn checksum_suffix(id15: &str) -> Option<String> {
    let bytes = id15.as_bytes();
    if bytes.len() != 15 || !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let suffix = bytes
        .chunks(5)
        .map(|chunk| {
            let bits = chunk
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_ascii_uppercase())
                .fold(0usize, |acc, (i, _)| acc | (1 << i));
            char::from(SUFFIX_ALPHABET[bits])
        })
        .collect();
    Some(suffix)
}

/// The canonical (case-sensitive) 15-character key of a 15- or 18-character id.
///
/// A 15-character id is taken as is. An 18-character id is case-insensitive: its suffix says
/// which of the first 15 characters are uppercase letters, so the key is rebuilt from it.
/// Returns `None` for anything else, including a suffix that contradicts the characters (a
/// digit where the suffix says "uppercase letter").
pub fn canonical_15(id: &str) -> Option<String> {
    let bytes = id.as_bytes();
    if !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    match bytes.len() {
        15 => Some(id.to_string()),
        18 => restore_case(&bytes[..15], &bytes[15..]),
        _ => None,
    }
}

fn restore_case(body: &[u8], suffix: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(15);
    for (chunk, code) in body.chunks(5).zip(suffix) {
        let upper = code.to_ascii_uppercase();
        let bits = SUFFIX_ALPHABET.iter().position(|c| *c == upper)?;
        for (i, c) in chunk.iter().enumerate() {
            let wants_upper = bits & (1 << i) != 0;
            match (wants_upper, c.is_ascii_alphabetic()) {
                (true, false) => return None,
                (true, true) => out.push(char::from(c.to_ascii_uppercase())),
                (false, _) => out.push(char::from(c.to_ascii_lowercase())),
            }
        }
    }
    Some(out)
}

/// The 18-character form of a canonical 15-character key.
pub fn to_18(id15: &str) -> Option<String> {
    checksum_suffix(id15).map(|suffix| format!("{id15}{suffix}"))
}

/// Whether a canonical key carries the given 3-character key prefix.
pub fn has_prefix(id15: &str, prefix: &str) -> bool {
    id15.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_matches_known_salesforce_example() {
        // The example used in Salesforce's own help article on 15- vs 18-character ids.
        assert_eq!(checksum_suffix("001A0000006Vm9r").as_deref(), Some("IAC"));
        assert_eq!(
            to_18("001A0000006Vm9r").as_deref(),
            Some("001A0000006Vm9rIAC")
        );
    }

    #[test]
    fn all_lowercase_chunks_give_a() {
        assert_eq!(checksum_suffix("003000000000000").as_deref(), Some("AAA"));
        assert_eq!(checksum_suffix("ABCDEabcdeABCDE").as_deref(), Some("5A5"));
    }

    #[test]
    fn eighteen_char_ids_are_case_insensitive() {
        let id = mint(CONTACT_PREFIX, 123_456_789);
        let key = canonical_15(&id).unwrap();
        assert_eq!(canonical_15(&id.to_lowercase()).unwrap(), key);
        assert_eq!(canonical_15(&id.to_uppercase()).unwrap(), key);
        assert_eq!(to_18(&key).unwrap(), id);
    }

    #[test]
    fn minted_ids_have_prefix_and_sort_in_order() {
        let a = mint(CONTACT_PREFIX, 61);
        let b = mint(CONTACT_PREFIX, 62);
        assert_eq!(a.len(), 18);
        assert!(a.starts_with("0038d0"));
        assert!(a[..15] < b[..15]);
    }

    #[test]
    fn malformed_ids_are_rejected() {
        assert_eq!(canonical_15("003"), None);
        assert_eq!(canonical_15("003-00000000000"), None);
        // Suffix says "uppercase letter" where the id has a digit.
        assert_eq!(canonical_15("00300000000000055A"), None);
        // `9` is not in the suffix alphabet.
        assert_eq!(canonical_15("003000000000000AA9"), None);
        assert_eq!(
            canonical_15("003000000000000").as_deref(),
            Some("003000000000000")
        );
    }
}
