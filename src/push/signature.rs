//! The Standard Webhooks signature (<https://www.standardwebhooks.com/>, spec
//! `spec/standard-webhooks.md` of github.com/standard-webhooks/standard-webhooks): every
//! delivery carries
//!
//! ```text
//! webhook-id:        the event's id, the same on every retry (receivers drop duplicates by it)
//! webhook-timestamp: when this attempt was signed, in whole seconds since the Unix epoch
//! webhook-signature: v1,<base64 of HMAC-SHA256(secret bytes, "{id}.{timestamp}.{body}")>
//! ```
//!
//! where the secret is `whsec_` followed by the base64 of the key bytes. The receiver
//! recomputes the HMAC over the raw body and refuses a timestamp far from its clock.
//!
//! The spec lets `webhook-signature` carry several signatures, space-separated
//! (`v1,<a> v1,<b>`), and a receiver accepts the delivery when any one verifies: during a
//! secret rotation's overlap a delivery is signed with the new secret and the previous one
//! ([`Signer`]), so a receiver still holding the previous secret keeps verifying.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix of a Standard Webhooks symmetric secret.
pub const SECRET_PREFIX: &str = "whsec_";
/// Random bytes in a generated secret (the spec asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// A subscription's signing key: the bytes the `whsec_…` string encodes.
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// Reads a `whsec_<base64>` secret (the prefix is optional, as the reference libraries
    /// accept); `None` if the rest is not base64 or is empty.
    pub fn parse(secret: &str) -> Option<Self> {
        let b64 = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        let bytes = STANDARD.decode(b64).ok()?;
        (!bytes.is_empty()).then_some(Self(bytes))
    }

    /// The `webhook-signature` header's value for one attempt: `v1,<base64 HMAC>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            unreachable!("HMAC accepts keys of every length")
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// What signs a subscription's deliveries: its secret and, during a rotation's overlap, the
/// secret it replaced, until that one expires.
pub struct Signer {
    current: SigningKey,
    /// The replaced secret's key and when it stops signing.
    previous: Option<(SigningKey, DateTime<Utc>)>,
}

impl Signer {
    pub fn new(current: SigningKey, previous: Option<(SigningKey, DateTime<Utc>)>) -> Self {
        Self { current, previous }
    }

    /// The `webhook-signature` header's value for an attempt signed at `at` (the
    /// `webhook-timestamp` is `at.timestamp()`): the current secret's `v1,…`, then, while `at`
    /// is before the previous secret's expiry, a space and the previous secret's.
    pub fn header(&self, id: &str, at: DateTime<Utc>, body: &[u8]) -> String {
        let timestamp = at.timestamp();
        let mut header = self.current.sign(id, timestamp, body);
        if let Some((key, until)) = &self.previous
            && at < *until
        {
            header.push(' ');
            header.push_str(&key.sign(id, timestamp, body));
        }
        header
    }
}

/// A new random secret, `whsec_` and the base64 of 32 random bytes.
pub fn generate_secret() -> String {
    use rand::Rng as _;
    let bytes: [u8; SECRET_BYTES] = rand::rng().random();
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published vector of the Standard Webhooks reference libraries
    /// (`libraries/python/tests/test_webhooks.py::test_sign_function`, the same in the
    /// JavaScript, Go and Rust libraries' tests).
    const KEY: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1_614_265_330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn the_published_vector_signs_as_published() {
        let key = SigningKey::parse(KEY).unwrap();
        assert_eq!(key.sign(ID, TIMESTAMP, BODY.as_bytes()), EXPECTED);
    }

    #[test]
    fn the_prefix_is_optional() {
        let key = SigningKey::parse(KEY.trim_start_matches(SECRET_PREFIX)).unwrap();
        assert_eq!(key.sign(ID, TIMESTAMP, BODY.as_bytes()), EXPECTED);
    }

    #[test]
    fn id_timestamp_and_body_each_change_the_signature() {
        let key = SigningKey::parse(KEY).unwrap();
        assert_ne!(key.sign("msg_other", TIMESTAMP, BODY.as_bytes()), EXPECTED);
        assert_ne!(key.sign(ID, TIMESTAMP + 1, BODY.as_bytes()), EXPECTED);
        assert_ne!(
            key.sign(ID, TIMESTAMP, br#"{"test": 2432232315}"#),
            EXPECTED
        );
    }

    /// Another key, to sign beside the published one.
    const OTHER: &str = "whsec_dGhlIHByZXZpb3VzIHNlY3JldCBvZiBhIHJvdGF0aW9u";

    fn at(timestamp: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(timestamp, 0).unwrap()
    }

    fn key(secret: &str) -> SigningKey {
        SigningKey::parse(secret).unwrap()
    }

    #[test]
    fn during_the_overlap_the_header_carries_the_new_signature_then_the_previous() {
        let other = key(OTHER).sign(ID, TIMESTAMP, BODY.as_bytes());
        // The published key as the new secret, and as the previous one.
        let rotated_to = Signer::new(key(KEY), Some((key(OTHER), at(TIMESTAMP + 1))));
        assert_eq!(
            rotated_to.header(ID, at(TIMESTAMP), BODY.as_bytes()),
            format!("{EXPECTED} {other}")
        );
        let rotated_from = Signer::new(key(OTHER), Some((key(KEY), at(TIMESTAMP + 1))));
        assert_eq!(
            rotated_from.header(ID, at(TIMESTAMP), BODY.as_bytes()),
            format!("{other} {EXPECTED}")
        );
        assert_ne!(other, EXPECTED);
    }

    #[test]
    fn from_its_expiry_on_the_previous_secret_no_longer_signs() {
        let expired = Signer::new(key(KEY), Some((key(OTHER), at(TIMESTAMP))));
        assert_eq!(expired.header(ID, at(TIMESTAMP), BODY.as_bytes()), EXPECTED);
        let alone = Signer::new(key(KEY), None);
        assert_eq!(alone.header(ID, at(TIMESTAMP), BODY.as_bytes()), EXPECTED);
    }

    #[test]
    fn generated_secrets_are_prefixed_base64_of_32_random_bytes() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        let raw = STANDARD
            .decode(a.strip_prefix(SECRET_PREFIX).unwrap())
            .unwrap();
        assert_eq!(raw.len(), 32);
        assert!(SigningKey::parse(&a).is_some());
    }

    #[test]
    fn secrets_that_are_not_base64_are_refused() {
        assert!(SigningKey::parse("whsec_not base64!").is_none());
        assert!(SigningKey::parse("whsec_").is_none());
    }
}
