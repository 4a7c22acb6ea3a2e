//! The OAuth 2.0 JWT bearer flow: checks an RS256 assertion against the connected app's
//! certificate and its `iss` / `sub` / `aud` / `exp` claims.
//!
//! What it is not: a user directory. Any non-empty `sub` is accepted, where Salesforce would
//! also require an existing, pre-authorised user; the token acts as the integration user.
//!
//! Vendor doc: https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_jwt_flow.htm
//! ("OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration") and crm-apis.md §2.1.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use serde_json::Value;

use super::state::{Sandbox, lock};

/// `grant_type` of the flow.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Salesforce wants `exp` "within 3 minutes". Assertions whose `exp` lies further ahead are
/// refused; 30 s of clock skew is tolerated [UNVERIFIED: the exact slack Salesforce allows].
const MAX_EXP_AHEAD_SECS: i64 = 180 + 30;

/// Audiences accepted besides the sandbox's own base URL: the login and test hosts, and any
/// `https://….salesforce.com` My Domain [UNVERIFIED: Salesforce documents login/test/community].
const LOGIN_AUDIENCES: &[&str] = &[
    "https://login.salesforce.com",
    "https://test.salesforce.com",
];

/// Why an assertion was refused, as the OAuth error pair.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct JwtError {
    pub error: &'static str,
    pub description: String,
}

fn refuse(error: &'static str, description: &str) -> JwtError {
    JwtError {
        error,
        description: description.to_string(),
    }
}

/// Decodes a PEM certificate once, at start-up or when the control API sets one.
pub fn parse_certificate(pem: &str) -> Result<CertificateDer<'static>, anyhow::Error> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("JWT certificate is not a PEM certificate: {e:?}"))?;
    webpki::EndEntityCert::try_from(&der)
        .map_err(|e| anyhow::anyhow!("JWT certificate cannot be parsed: {e}"))?;
    Ok(der)
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// Verifies `assertion` for this sandbox.
pub fn verify(sb: &Sandbox, assertion: Option<&str>) -> Result<(), JwtError> {
    let Some(cert) = lock(&sb.jwt_certificate).clone() else {
        return Err(refuse(
            "unsupported_grant_type",
            "JWT bearer flow is not enabled: no certificate is configured for the connected app",
        ));
    };
    let assertion = assertion.ok_or_else(|| refuse("invalid_request", "assertion is required"))?;
    let claims = check_signature(&cert, assertion)?;
    check_claims(
        &claims,
        &sb.client_id,
        &sb.base_url,
        chrono::Utc::now().timestamp(),
    )
}

/// Checks the RS256 signature and returns the decoded claims.
fn check_signature(cert: &CertificateDer<'_>, assertion: &str) -> Result<Value, JwtError> {
    let invalid = || refuse("invalid_grant", "invalid assertion");
    let mut parts = assertion.split('.');
    let (Some(head), Some(body), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let decode = |s: &str| {
        URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|_| invalid())
    };
    let header: Header = serde_json::from_slice(&decode(head)?).map_err(|_| invalid())?;
    if header.alg != "RS256" {
        return Err(refuse(
            "invalid_grant",
            "invalid assertion: alg must be RS256",
        ));
    }
    let end_entity = webpki::EndEntityCert::try_from(cert).map_err(|_| invalid())?;
    let signed = &assertion[..head.len() + 1 + body.len()];
    end_entity
        .verify_signature(
            webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            signed.as_bytes(),
            &decode(sig)?,
        )
        .map_err(|_| {
            refuse(
                "invalid_grant",
                "invalid assertion: signature does not match the certificate",
            )
        })?;
    serde_json::from_slice(&decode(body)?).map_err(|_| invalid())
}

/// Checks `iss`, `sub`, `aud` and `exp` against the app and the clock (`now` in epoch seconds).
fn check_claims(claims: &Value, client_id: &str, base_url: &str, now: i64) -> Result<(), JwtError> {
    if claims["iss"].as_str() != Some(client_id) {
        return Err(refuse("invalid_client_id", "client identifier invalid"));
    }
    if claims["sub"].as_str().is_none_or(str::is_empty) {
        return Err(refuse(
            "invalid_grant",
            "invalid assertion: sub is required",
        ));
    }
    let aud_ok = |a: &str| {
        let a = a.trim_end_matches('/');
        a == base_url
            || LOGIN_AUDIENCES.contains(&a)
            || (a.starts_with("https://") && a.ends_with(".salesforce.com"))
    };
    let audiences: Vec<&str> = match &claims["aud"] {
        Value::String(s) => vec![s.as_str()],
        Value::Array(v) => v.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.into_iter().any(aud_ok) {
        return Err(refuse("invalid_grant", "audience is invalid"));
    }
    // simple-salesforce sends `exp` as a string of digits, so accept both forms.
    let exp = match &claims["exp"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    match exp {
        Some(exp) if exp > now && exp - now <= MAX_EXP_AHEAD_SECS => Ok(()),
        Some(exp) if exp > now => Err(refuse(
            "invalid_grant",
            "invalid assertion: exp must be within 3 minutes",
        )),
        _ => Err(refuse("invalid_grant", "expired authorization code")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BASE: &str = "http://127.0.0.1:1";

    #[test]
    fn claims_are_checked_in_order() {
        let ok = json!({"iss": "cid", "sub": "u@x", "aud": "https://login.salesforce.com", "exp": "1100"});
        assert_eq!(check_claims(&ok, "cid", BASE, 1000), Ok(()));
        let cases = [
            (json!({"iss": "other"}), "invalid_client_id"),
            (
                json!({"iss": "cid", "sub": "", "aud": BASE, "exp": 1100}),
                "invalid_grant",
            ),
            (
                json!({"iss": "cid", "sub": "u", "aud": "https://evil.example", "exp": 1100}),
                "invalid_grant",
            ),
            (
                json!({"iss": "cid", "sub": "u", "aud": [BASE], "exp": 999}),
                "invalid_grant",
            ),
            (
                json!({"iss": "cid", "sub": "u", "aud": BASE, "exp": 5000}),
                "invalid_grant",
            ),
        ];
        for (claims, error) in cases {
            assert_eq!(
                check_claims(&claims, "cid", BASE, 1000).unwrap_err().error,
                error,
                "{claims}"
            );
        }
    }

    #[test]
    fn malformed_assertions_are_invalid_grants() {
        let cert = parse_certificate(include_str!("tests/fixtures/jwt_cert.pem")).unwrap();
        for bad in ["", "a.b", "a.b.c.d", "e30.e30.AAAA"] {
            assert_eq!(
                check_signature(&cert, bad).unwrap_err().error,
                "invalid_grant",
                "{bad}"
            );
        }
        assert!(parse_certificate("not a pem").is_err());
    }
}
