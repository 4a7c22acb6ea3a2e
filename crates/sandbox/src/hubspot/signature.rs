//! HubSpot's webhook request signatures, v1 and v3, as the sandbox puts them on deliveries.
//!
//! Signing only: the sandbox never verifies signatures. The strings hashed and the URI
//! decoding rule follow HubSpot's "Validating requests" page.
//! <https://developers.hubspot.com/docs/api/webhooks/validating-requests>
//!
//! | version | hashed string                          | algorithm                   | encoding      |
//! |---------|----------------------------------------|-----------------------------|---------------|
//! | v1      | `clientSecret + body`                  | SHA-256                     | lowercase hex |
//! | v3      | `method + uri + body + timestamp`      | HMAC-SHA-256 (client secret)| Base64        |

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Percent-escapes a v3 verifier decodes in the request URI before hashing; all others stay.
const V3_DECODED: [(&str, char); 12] = [
    ("%3A", ':'),
    ("%2F", '/'),
    ("%3F", '?'),
    ("%40", '@'),
    ("%21", '!'),
    ("%24", '$'),
    ("%27", '\''),
    ("%28", '('),
    ("%29", ')'),
    ("%2A", '*'),
    ("%2C", ','),
    ("%3B", ';'),
];

/// `X-HubSpot-Signature` with `X-HubSpot-Signature-Version: v1`.
pub fn sign_v1(client_secret: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(client_secret.as_bytes());
    hasher.update(body);
    hex(&hasher.finalize())
}

/// `X-HubSpot-Signature-v3` over a URI the verifier has already decoded with
/// [`decode_uri_for_v3`].
pub fn sign_v3(
    client_secret: &str,
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp: &str,
) -> String {
    // HMAC accepts keys of any length, so this cannot fail; an empty tag would only make
    // every signature invalid, never panic.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(client_secret.as_bytes()) else {
        return String::new();
    };
    mac.update(method.as_bytes());
    mac.update(uri.as_bytes());
    mac.update(body);
    mac.update(timestamp.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Applies HubSpot's v3 decoding table to a full request URI (scheme, host, path, query).
/// Matching is case-insensitive on the hex digits, as percent-encoding is.
pub fn decode_uri_for_v3(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let escape = rest.get(pos..pos + 3);
        let decoded = escape.and_then(|e| {
            V3_DECODED
                .iter()
                .find(|(code, _)| code.eq_ignore_ascii_case(e))
                .map(|(_, ch)| *ch)
        });
        match decoded {
            Some(ch) => {
                out.push(ch);
                rest = &rest[pos + 3..];
            }
            None => {
                out.push('%');
                rest = &rest[pos + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    const BODY: &str = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;

    #[test]
    fn v1_matches_hubspots_published_example() {
        assert_eq!(
            sign_v1(SECRET, BODY.as_bytes()),
            "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
        );
    }

    #[test]
    fn v3_matches_the_reference_vector() {
        let uri = "https://sync.example.test/hooks/hubspot?tenant=acme";
        assert_eq!(
            sign_v3(SECRET, "POST", uri, BODY.as_bytes(), "1700000000000"),
            "wgUdoliFIzEmoURmq3miJPrWHd8+rvYGrM/K3zlKZLo="
        );
    }

    #[test]
    fn v3_signs_the_decoded_uri() {
        let received = "https://sync.example.test/hooks/hubspot?email=a%40b.com&x=%2Fy%20z";
        let decoded = decode_uri_for_v3(received);
        assert_eq!(
            decoded,
            "https://sync.example.test/hooks/hubspot?email=a@b.com&x=/y%20z"
        );
        assert_eq!(
            sign_v3(SECRET, "POST", &decoded, BODY.as_bytes(), "1700000000000"),
            "ATLhZLjPir2SjwGZtXVnCcE16arYE3kG7wlP7EpXN28="
        );
    }

    #[test]
    fn decoding_keeps_other_escapes_and_stray_percents() {
        assert_eq!(decode_uri_for_v3("/a%2b%3d%26%2a%3a%"), "/a%2b%3d%26*:%");
    }

    #[test]
    fn v3_changes_when_the_body_is_tampered_with() {
        let uri = "https://sync.example.test/hooks/hubspot?tenant=acme";
        let tampered = BODY.replace("123", "124");
        assert_ne!(
            sign_v3(SECRET, "POST", uri, tampered.as_bytes(), "1700000000000"),
            "wgUdoliFIzEmoURmq3miJPrWHd8+rvYGrM/K3zlKZLo="
        );
    }
}
