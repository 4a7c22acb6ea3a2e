//! Bearer keys and their scopes: who a request comes from and whether it may do what it asks.
//!
//! Three lists of keys, each granting scopes (webhook secrets are none of them: the receivers
//! verify the CRMs' signatures, never a key):
//!
//! | list          | scopes      | opens                                             |
//! |---------------|-------------|---------------------------------------------------|
//! | `read_keys`   | read        | `GET /contacts…`                                  |
//! | `api_keys`    | read, write | everything under `/contacts` (as before scopes)   |
//! | `admin_keys`  | admin       | `/dlq…` and `/admin/…`, nothing else              |
//!
//! A missing or unknown key is a 401; a known key without the scope an operation needs is a
//! 403 naming the scope ([`required_scope`] says which, from the route's [`Area`] and the
//! method, and the OpenAPI document shows the same). A known key then passes its own limits
//! (`super::limits`). Keys are held only as SHA-256 digests, and a presented key is compared
//! against every configured key in constant time, so neither timing nor key length leaks which
//! key, or how much of one, matched. Refusals are audit events (target `audit`) that carry at
//! most a short prefix of the presented key's digest, never the key.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::limits::KeyLimiter;
use super::problem::ApiError;
use crate::config::KeyLimits;
use crate::secret::Secret;

/// What an operation needs a key to allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Reading contacts.
    Read,
    /// Creating, changing and deleting contacts.
    Write,
    /// The dead-letter admin API and the audit log.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

/// Which list a key comes from, and so what it may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// `read_keys`.
    ReadOnly,
    /// `api_keys`.
    ReadWrite,
    /// `admin_keys`.
    Admin,
}

impl Grant {
    pub fn allows(self, scope: Scope) -> bool {
        matches!(
            (self, scope),
            (Self::ReadOnly, Scope::Read)
                | (Self::ReadWrite, Scope::Read | Scope::Write)
                | (Self::Admin, Scope::Admin)
        )
    }

    /// The variable the key's list is set with, for messages.
    fn list(self) -> &'static str {
        match self {
            Self::ReadOnly => "SYNCROOT_READ_KEYS",
            Self::ReadWrite => "SYNCROOT_API_KEYS",
            Self::Admin => "SYNCROOT_ADMIN_KEYS",
        }
    }
}

/// The part of the API a route belongs to: with the method, it decides the scope needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Area {
    /// `/contacts…`.
    Contacts,
    /// `/dlq…` and `/admin/…`.
    Admin,
}

impl Area {
    /// The OpenAPI security scheme of the area's operations.
    pub fn scheme(self) -> &'static str {
        match self {
            Self::Contacts => "api_key",
            Self::Admin => "admin_key",
        }
    }
}

/// The scope an operation needs: reading contacts needs `read`, changing them `write`, and
/// everything in the admin area `admin`. The middleware enforces it and the OpenAPI document
/// states it, both from here.
pub fn required_scope(area: Area, method: &Method) -> Scope {
    match area {
        Area::Admin => Scope::Admin,
        Area::Contacts if method == Method::GET || method == Method::HEAD => Scope::Read,
        Area::Contacts => Scope::Write,
    }
}

/// Every configured key, as digests, each with its grant and its limits.
pub struct Keys {
    entries: Vec<KeyEntry>,
}

struct KeyEntry {
    digest: [u8; 32],
    grant: Grant,
    limiter: KeyLimiter,
}

/// Who made a request: the key's id (the first 16 hex digits of its SHA-256, not a secret)
/// and what the key may do. The id scopes idempotency keys and names the key in the audit log.
#[derive(Clone, Debug)]
pub struct Principal {
    pub id: String,
    pub grant: Grant,
}

impl Keys {
    /// The three lists; every key gets its own limiter with `limits`.
    pub fn new(
        read: &[Secret],
        read_write: &[Secret],
        admin: &[Secret],
        limits: KeyLimits,
    ) -> Self {
        let lists = [
            (Grant::ReadOnly, read),
            (Grant::ReadWrite, read_write),
            (Grant::Admin, admin),
        ];
        let entries = lists
            .into_iter()
            .flat_map(|(grant, keys)| keys.iter().map(move |k| (grant, k)))
            .map(|(grant, k)| KeyEntry {
                digest: digest(k.expose()),
                grant,
                limiter: KeyLimiter::new(limits),
            })
            .collect();
        Self { entries }
    }

    /// No keys at all (the OpenAPI document is generated without any).
    pub fn none() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    fn verify(&self, presented: &str) -> Option<&KeyEntry> {
        let d = digest(presented);
        let mut found = None;
        for e in &self.entries {
            // No early exit: every key is compared whatever the outcome.
            if bool::from(e.digest.ct_eq(&d)) {
                found = Some(e);
            }
        }
        found
    }

    fn any(&self, grant: Grant) -> bool {
        self.entries.iter().any(|e| e.grant == grant)
    }

    /// The ids of the keys of each list, for the start-up audit event: what an operator
    /// matches the audit log's key ids against.
    pub fn ids(&self, grant: Grant) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.grant == grant)
            .map(|e| key_id(&e.digest))
            .collect()
    }
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A configured key's id: the first 8 bytes of its digest, in hex.
fn key_id(digest: &[u8; 32]) -> String {
    hex(&digest[..8])
}

/// What the audit log shows of a key that did not verify: the first 4 bytes of its digest,
/// enough to tell repeated attempts with one key apart from many keys, and to match a
/// mistyped or revoked key against the ids logged at start-up, never enough to recover it.
fn fingerprint(presented: &str) -> String {
    hex(&digest(presented)[..4])
}

/// The route's keys and area, the middleware's state.
pub type Gate = (Arc<Keys>, Area);

/// Middleware: requires `Authorization: Bearer <key>` of a key whose scope allows the
/// operation and that is within its limits; records the [`Principal`].
pub async fn require_scope(
    State((keys, area)): State<Gate>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let needed = required_scope(area, req.method());
    if area == Area::Admin && !keys.any(Grant::Admin) {
        refused(&req, "no_admin_keys", None);
        return Err(ApiError::Unauthorized(
            "no admin keys are configured (SYNCROOT_ADMIN_KEYS), so the admin API is closed",
        ));
    }
    let token = match bearer(req.headers(), area) {
        Ok(token) => token,
        Err((reason, message)) => {
            refused(&req, reason, None);
            return Err(ApiError::Unauthorized(message));
        }
    };
    let Some(key) = keys.verify(token) else {
        refused(&req, "unknown_key", Some(&fingerprint(token)));
        return Err(ApiError::Unauthorized(match area {
            Area::Contacts => "the API key is not valid",
            Area::Admin => "the admin key is not valid",
        }));
    };
    let id = key_id(&key.digest);
    // Limits before scopes: a key sending requests it may not make is still held to its rate.
    let _permit = key.limiter.admit()?;
    if !key.grant.allows(needed) {
        tracing::warn!(
            target: "audit", event = "access_denied", key_id = %id, list = key.grant.list(),
            scope = needed.as_str(), method = %req.method(), path = req.uri().path(),
            "a key without the scope an operation needs was refused"
        );
        return Err(ApiError::Forbidden {
            scope: needed.as_str(),
            detail: format!(
                "this key (id {id}, from {}) lacks the {} scope {} {} needs",
                key.grant.list(),
                needed.as_str(),
                req.method(),
                req.uri().path()
            ),
        });
    }
    req.extensions_mut().insert(Principal {
        id,
        grant: key.grant,
    });
    Ok(next.run(req).await)
}

/// The bearer token, or why there is none (audit reason, client message).
fn bearer(headers: &HeaderMap, area: Area) -> Result<&str, (&'static str, &'static str)> {
    let missing = match area {
        Area::Contacts => "send Authorization: Bearer <api key>",
        Area::Admin => "send Authorization: Bearer <admin key> (one of admin_keys)",
    };
    let header = headers
        .get(header::AUTHORIZATION)
        .ok_or(("missing_key", missing))?;
    header
        .to_str()
        .ok()
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or((
            "not_bearer",
            "the Authorization header must use the Bearer scheme",
        ))
}

/// The audit event of a failed authentication: why, where, and at most the presented key's
/// fingerprint.
fn refused(req: &Request, reason: &'static str, fingerprint: Option<&str>) {
    tracing::warn!(
        target: "audit", event = "authentication_failed", reason,
        key_fingerprint = fingerprint.unwrap_or(""), method = %req.method(),
        path = req.uri().path(), "a request without a valid key was refused"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(
            &[Secret::new("read-key-0123456789")],
            &[
                Secret::new("first-key-0123456789"),
                Secret::new("second-key-0123456789"),
            ],
            &[Secret::new("admin-key-0123456789")],
            KeyLimits::default(),
        )
    }

    #[test]
    fn only_configured_keys_verify_each_with_its_list() {
        let keys = keys();
        let a = keys.verify("first-key-0123456789").unwrap();
        let b = keys.verify("second-key-0123456789").unwrap();
        assert_ne!(key_id(&a.digest), key_id(&b.digest));
        assert_eq!(a.grant, Grant::ReadWrite);
        assert_eq!(
            keys.verify("read-key-0123456789").unwrap().grant,
            Grant::ReadOnly
        );
        assert_eq!(
            keys.verify("admin-key-0123456789").unwrap().grant,
            Grant::Admin
        );
        assert!(keys.verify("first-key-012345678").is_none());
        assert!(keys.verify("").is_none());
    }

    #[test]
    fn each_list_opens_only_its_scopes() {
        use Scope::*;
        let table = [
            (Grant::ReadOnly, [true, false, false]),
            (Grant::ReadWrite, [true, true, false]),
            (Grant::Admin, [false, false, true]),
        ];
        for (grant, allowed) in table {
            for (scope, want) in [Read, Write, Admin].into_iter().zip(allowed) {
                assert_eq!(grant.allows(scope), want, "{grant:?} {scope:?}");
            }
        }
        assert_eq!(required_scope(Area::Contacts, &Method::GET), Read);
        assert_eq!(required_scope(Area::Contacts, &Method::HEAD), Read);
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(required_scope(Area::Contacts, &m), Write, "{m}");
        }
        assert_eq!(required_scope(Area::Admin, &Method::GET), Admin);
    }

    #[test]
    fn ids_and_fingerprints_are_digest_prefixes_never_the_key() {
        let keys = keys();
        let ids = keys.ids(Grant::ReadWrite);
        // sha256("first-key-0123456789"), computed independently with sha256sum.
        assert_eq!(ids[0], EXPECTED_FIRST_ID);
        assert_eq!(fingerprint("first-key-0123456789"), EXPECTED_FIRST_ID[..8]);
        assert!(!ids[0].contains("first"));
    }

    const EXPECTED_FIRST_ID: &str = "ed60d7524db22ad1";
}
