//! Bearer-key authentication: the write keys for `/contacts`, the admin keys for `/dlq`.
//!
//! The two sets are separate [`ApiKeys`] behind the same middleware, so a write key never opens
//! the admin API and an admin key never writes contacts: each is simply not a valid key there.
//! Keys are held only as SHA-256 digests and a presented key is compared against every
//! configured key in constant time, so neither timing nor key length leaks which key, or how
//! much of one, matched.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::problem::ApiError;
use crate::secret::Secret;

/// The configured keys of one kind, as digests.
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
    kind: KeyKind,
}

/// Which credential a route wants; only changes what a refusal says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// `api_keys`: `/contacts`.
    Write,
    /// `admin_keys`: `/dlq`.
    Admin,
}

/// Who made a request: a stable, non-secret tag of the key used (first 8 bytes of its digest,
/// hex). Scopes idempotency keys so two clients cannot collide.
#[derive(Clone, Debug)]
pub struct Principal(pub String);

impl ApiKeys {
    /// The write keys (`api_keys`).
    pub fn new(keys: &[Secret]) -> Self {
        Self::of(KeyKind::Write, keys)
    }

    /// The admin keys (`admin_keys`). None configured: every admin request is refused.
    pub fn admin(keys: &[Secret]) -> Self {
        Self::of(KeyKind::Admin, keys)
    }

    fn of(kind: KeyKind, keys: &[Secret]) -> Self {
        Self {
            digests: keys.iter().map(|k| digest(k.expose())).collect(),
            kind,
        }
    }

    /// Returns the principal for a presented key, or `None`.
    pub fn verify(&self, presented: &str) -> Option<Principal> {
        let d = digest(presented);
        let mut found: Option<&[u8; 32]> = None;
        for k in &self.digests {
            // No early exit: every key is compared whatever the outcome.
            if bool::from(k.ct_eq(&d)) {
                found = Some(k);
            }
        }
        found.map(|k| Principal(k[..8].iter().map(|b| format!("{b:02x}")).collect()))
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Middleware: requires `Authorization: Bearer <key>` and records the [`Principal`].
pub async fn require_key(
    State(keys): State<std::sync::Arc<ApiKeys>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (missing, invalid) = match keys.kind {
        KeyKind::Write => (
            "send Authorization: Bearer <api key>",
            "the API key is not valid",
        ),
        KeyKind::Admin => (
            "send Authorization: Bearer <admin key> (one of admin_keys)",
            "the admin key is not valid (API keys do not open the admin API)",
        ),
    };
    if keys.digests.is_empty() && keys.kind == KeyKind::Admin {
        return Err(ApiError::Unauthorized(
            "no admin keys are configured (SYNCROOT_ADMIN_KEYS), so the admin API is closed",
        ));
    }
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or(ApiError::Unauthorized(missing))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or(ApiError::Unauthorized(
            "the Authorization header must use the Bearer scheme",
        ))?;
    let principal = keys.verify(token).ok_or(ApiError::Unauthorized(invalid))?;
    req.extensions_mut().insert(principal);
    Ok(next.run(req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_keys_verify() {
        let keys = ApiKeys::new(&[
            Secret::new("first-key-0123456789"),
            Secret::new("second-key-0123456789"),
        ]);
        let a = keys.verify("first-key-0123456789").unwrap();
        let b = keys.verify("second-key-0123456789").unwrap();
        assert_ne!(a.0, b.0);
        assert!(keys.verify("first-key-012345678").is_none());
        assert!(keys.verify("").is_none());
    }
}
