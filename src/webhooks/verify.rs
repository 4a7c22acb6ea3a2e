//! Webhook signature verification: did this request come from HubSpot, or from a Salesforce org
//! signing with SyncRoot's convention, and is it fresh?
//!
//! Pure: the receiver passes the raw body bytes, the method, the URI it was called at, header
//! values, the configured secrets and its clock, and gets `Ok(())` or a [`Refusal`] to answer
//! 401 with. Verification runs on the raw bytes before anything is parsed. Every comparison of
//! signature bytes is constant-time, and every configured secret is tried (several secrets =
//! rotation), so timing tells neither how much of a signature matched nor which secret did.
//!
//! Not for: reading the request, building the public URI (the receiver builds it from the
//! configured public base URL, because behind a proxy the `Host` header is not trusted),
//! parsing payloads, or signing (the sandboxes sign, independently of this code).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::secret::Secret;

type HmacSha256 = Hmac<Sha256>;

const HUBSPOT_V3_SIGNATURE: &str = "X-HubSpot-Signature-v3";
const HUBSPOT_TIMESTAMP: &str = "X-HubSpot-Request-Timestamp";
const HUBSPOT_SIGNATURE: &str = "X-HubSpot-Signature";
const HUBSPOT_VERSION: &str = "X-HubSpot-Signature-Version";
const SYNC_TIMESTAMP: &str = "X-Sync-Timestamp";
const SYNC_SIGNATURE: &str = "X-Sync-Signature";

/// Why a webhook request is refused. The receiver answers 401 with this text, so it names what
/// was wrong and never contains a secret or the expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A header the scheme needs is absent (its canonical name).
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// The timestamp header is not epoch milliseconds in decimal digits.
    #[error("the timestamp header is not epoch milliseconds in decimal digits")]
    BadTimestamp,
    /// The timestamp is further in the past than the replay window.
    #[error("the timestamp is older than the replay window")]
    Stale,
    /// The timestamp is further in the future than the replay window.
    #[error("the timestamp is further in the future than the replay window")]
    Future,
    /// No configured secret produces the presented signature (or it is not valid Base64/hex).
    #[error("the signature does not match")]
    Mismatch,
    /// A HubSpot signature version that is not enabled: `v1`, `v2`, or `unrecognised`.
    #[error("signature version {0} is not accepted")]
    SchemeNotAllowed(&'static str),
}

/// Which HubSpot signature versions are accepted. v3 always; v1 and v2 only when configured,
/// because they sign no timestamp, so a captured request can be replayed forever.
/// The default accepts v3 only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubspotScheme {
    pub allow_v1: bool,
    pub allow_v2: bool,
}

/// One request as HubSpot sent it, in the receiver's plain values.
#[derive(Clone, Copy, Debug)]
pub struct HubspotRequest<'a> {
    /// The HTTP method as received (`POST`, `GET`, ...).
    pub method: &'a str,
    /// The full URI HubSpot called, `scheme://host[:port]/path?query`: the configured public
    /// base URL plus the path and query exactly as received (percent-escapes untouched).
    pub uri: &'a str,
    /// The raw body bytes, before any parsing.
    pub body: &'a [u8],
    /// Header `(name, value)` pairs. Names match case-insensitively; the first occurrence wins.
    pub headers: &'a [(&'a str, &'a str)],
}

impl HubspotRequest<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// Checks a HubSpot webhook (or CRM card / workflow action) request.
///
/// `now_ms` is the receiver's clock in epoch milliseconds; `window` is how far the v3 timestamp
/// may be from it in either direction (HubSpot documents 5 minutes). Unlike HubSpot's SDKs,
/// which only reject old timestamps, a timestamp too far ahead is refused too.
///
/// When `X-HubSpot-Signature-v3` is present it alone decides: falling back to the v1/v2
/// signature HubSpot sends beside it would let anyone who strips the v3 headers from a captured
/// request replay it without a timestamp.
pub fn verify_hubspot(
    req: &HubspotRequest<'_>,
    secrets: &[Secret],
    scheme: HubspotScheme,
    now_ms: i64,
    window: Duration,
) -> Result<(), Refusal> {
    if let Some(signature) = req.header(HUBSPOT_V3_SIGNATURE) {
        return verify_hubspot_v3(req, signature, secrets, now_ms, window);
    }
    let Some(version) = req.header(HUBSPOT_VERSION) else {
        return Err(Refusal::MissingHeader(HUBSPOT_V3_SIGNATURE));
    };
    let (name, allowed) = if version.eq_ignore_ascii_case("v1") {
        ("v1", scheme.allow_v1)
    } else if version.eq_ignore_ascii_case("v2") {
        ("v2", scheme.allow_v2)
    } else {
        ("unrecognised", false)
    };
    if !allowed {
        return Err(Refusal::SchemeNotAllowed(name));
    }
    let signature = req
        .header(HUBSPOT_SIGNATURE)
        .ok_or(Refusal::MissingHeader(HUBSPOT_SIGNATURE))?;
    // Anything that is not hex cannot match a hex digest.
    let presented = decode_hex(signature).ok_or(Refusal::Mismatch)?;
    // v1: https://developers.hubspot.com/docs/faq/v1-request-validation
    //     hex(SHA-256(clientSecret + rawBody)), no HMAC.
    // v2: https://developers.hubspot.com/docs/faq/v2-request-validation
    //     hex(SHA-256(clientSecret + method + URI + rawBody)), the URI exactly as received.
    let signed: &[&[u8]] = if name == "v1" {
        &[req.body]
    } else {
        &[req.method.as_bytes(), req.uri.as_bytes(), req.body]
    };
    any_secret_matches(&presented, secrets, |secret| {
        let mut digest = Sha256::new();
        digest.update(secret);
        for part in signed {
            digest.update(part);
        }
        Some(digest.finalize().into())
    })
}

/// v3: https://developers.hubspot.com/docs/api/webhooks/validating-requests
/// Base64(HMAC-SHA256(clientSecret, method + decodedUri + rawBody + timestampHeader)).
fn verify_hubspot_v3(
    req: &HubspotRequest<'_>,
    signature: &str,
    secrets: &[Secret],
    now_ms: i64,
    window: Duration,
) -> Result<(), Refusal> {
    let timestamp = req
        .header(HUBSPOT_TIMESTAMP)
        .ok_or(Refusal::MissingHeader(HUBSPOT_TIMESTAMP))?;
    check_fresh(timestamp, now_ms, window)?;
    let presented = STANDARD.decode(signature).map_err(|_| Refusal::Mismatch)?;
    let uri = decode_v3_uri(req.uri);
    // The timestamp is hashed as the header string, never re-rendered from the parsed number.
    let signed = [
        req.method.as_bytes(),
        uri.as_bytes(),
        req.body,
        timestamp.as_bytes(),
    ];
    any_secret_matches(&presented, secrets, |secret| hmac_sha256(secret, &signed))
}

/// Checks a request in SyncRoot's signed Salesforce convention (docs/salesforce-webhooks.md,
/// "Verifying (receiver)"): `X-Sync-Signature` =
/// Base64(HMAC-SHA256(secret, `X-Sync-Timestamp` + "." + rawBody)), the timestamp in epoch
/// milliseconds within `window` of `now_ms` (epoch milliseconds) in either direction.
/// The arguments are the two header values, `None` when absent.
pub fn verify_sync_signature(
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    secrets: &[Secret],
    now_ms: i64,
    window: Duration,
) -> Result<(), Refusal> {
    let timestamp = timestamp.ok_or(Refusal::MissingHeader(SYNC_TIMESTAMP))?;
    let signature = signature.ok_or(Refusal::MissingHeader(SYNC_SIGNATURE))?;
    check_fresh(timestamp, now_ms, window)?;
    let presented = STANDARD.decode(signature).map_err(|_| Refusal::Mismatch)?;
    let signed = [timestamp.as_bytes(), b".", body];
    any_secret_matches(&presented, secrets, |secret| hmac_sha256(secret, &signed))
}

/// Refuses a timestamp that is not decimal digits (no sign, no spaces, no fraction) or lies
/// more than `window` from `now_ms`. Computed in `i128` so no input can overflow.
fn check_fresh(timestamp: &str, now_ms: i64, window: Duration) -> Result<(), Refusal> {
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::BadTimestamp);
    }
    // Only digits, so the one way to fail is a value beyond i64 (far in the future anyway).
    let sent: i64 = timestamp.parse().map_err(|_| Refusal::BadTimestamp)?;
    let window = i128::try_from(window.as_millis()).unwrap_or(i128::MAX);
    let age = i128::from(now_ms) - i128::from(sent);
    if age > window {
        Err(Refusal::Stale)
    } else if -age > window {
        Err(Refusal::Future)
    } else {
        Ok(())
    }
}

/// Compares `presented` with the signature each configured secret gives, all of them, in
/// constant time. An empty secret is skipped: it would make signatures anyone can compute.
/// With no usable secret nothing matches, so every request is refused.
fn any_secret_matches(
    presented: &[u8],
    secrets: &[Secret],
    expected: impl Fn(&[u8]) -> Option<[u8; 32]>,
) -> Result<(), Refusal> {
    let mut matched = Choice::from(0);
    for secret in secrets.iter().map(|s| s.expose().as_bytes()) {
        if secret.is_empty() {
            continue;
        }
        if let Some(mac) = expected(secret) {
            matched |= mac[..].ct_eq(presented);
        }
    }
    if bool::from(matched) {
        Ok(())
    } else {
        Err(Refusal::Mismatch)
    }
}

/// HMAC-SHA256 over the concatenation of `parts`. HMAC takes keys of any length, so `None`
/// never happens; it only avoids a panic path.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 32]> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().into())
}

/// The characters whose percent-escapes v3 decodes before signing (HubSpot's table: `%3A`
/// `%2F` `%3F` `%40` `%21` `%24` `%27` `%28` `%29` `%2A` `%2C` `%3B`, hex in either case).
/// Every other escape (`%20`, `%2B`, `%26`, `%3D`, `%25`, ...) stays as received.
const V3_DECODED: &[u8] = b":/?@!$'()*,;";

/// The URI as HubSpot signs it for v3: the table's escapes decoded, in one pass (so `%253A`
/// stays `%253A`), everything else untouched.
fn decode_v3_uri(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(at) = rest.find('%') {
        let (before, escape) = rest.split_at(at);
        out.push_str(before);
        match escape.get(1..3).and_then(v3_escape) {
            Some(c) => {
                out.push(c);
                rest = escape.get(3..).unwrap_or_default();
            }
            None => {
                out.push('%');
                rest = escape.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

fn v3_escape(hex: &str) -> Option<char> {
    // from_str_radix alone would accept a sign (`%+A`).
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let byte = u8::from_str_radix(hex, 16).ok()?;
    V3_DECODED.contains(&byte).then_some(char::from(byte))
}

/// Hex (either case) to bytes; `None` if it is not an even number of hex digits.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| match pair {
            [hi, lo] => Some((hex_value(*hi)? << 4) | hex_value(*lo)?),
            _ => None,
        })
        .collect()
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

/// Whether a secret path segment (Salesforce Outbound Messages carry no signature; a secret
/// in their endpoint URL stands in for one) is the configured one. Both sides are hashed
/// first, so the comparison takes the same time whatever the presented length and however
/// much of it matches.
pub fn path_token_matches(configured: &Secret, presented: &str) -> bool {
    let want = Sha256::digest(configured.expose().as_bytes());
    let got = Sha256::digest(presented.as_bytes());
    !configured.expose().is_empty() && bool::from(want.ct_eq(&got))
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
