//! `Email`: a validated, normalised e-mail address (parse, don't validate).
//!
//! The accepted syntax is deliberately a strict, practical subset of RFC 5322 that every CRM
//! accepts: a dot-atom local part, `@`, and a domain of two or more DNS labels. The same rule
//! is published in the OpenAPI spec as [`EMAIL_PATTERN`], so clients and the server agree.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest address accepted, in characters (RFC 5321 path limit minus the brackets).
pub const EMAIL_MAX_LEN: usize = 254;

/// The syntax rule, as published in the OpenAPI spec (ECMA-262 / Python `re` compatible).
pub const EMAIL_PATTERN: &str = r"^(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$";

/// Longest local part (before `@`), in characters (RFC 5321 §4.5.3.1.1).
pub const LOCAL_MAX_LEN: usize = 64;
/// Longest DNS label, in characters (RFC 1035).
pub const LABEL_MAX_LEN: usize = 63;

/// An e-mail address that passed [`Email::parse`], stored lower-cased.
///
/// Lower-casing the whole address (not only the domain) matches how HubSpot and Salesforce
/// de-duplicate contacts, which is what SyncRoot's uniqueness rule must agree with.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

/// Why a string is not an acceptable e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmailError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {EMAIL_MAX_LEN} characters")]
    TooLong,
    #[error("must contain exactly one '@' with text on both sides")]
    Shape,
    #[error(
        "local part (before '@') may only contain letters, digits, dots and !#$%&'*+/=?^_`{{|}}~- and must not start, end or repeat a dot"
    )]
    Local,
    #[error("local part (before '@') must be at most {LOCAL_MAX_LEN} characters")]
    LocalTooLong,
    #[error(
        "domain (after '@') must be two or more labels of letters, digits and inner hyphens, such as example.com"
    )]
    Domain,
}

impl Email {
    /// Parses and normalises an address. Surrounding whitespace is an error, not trimmed,
    /// so that what the spec's pattern rejects, the server rejects too.
    pub fn parse(raw: &str) -> Result<Self, EmailError> {
        if raw.is_empty() {
            return Err(EmailError::Empty);
        }
        if raw.chars().count() > EMAIL_MAX_LEN {
            return Err(EmailError::TooLong);
        }
        let (local, domain) = raw.split_once('@').ok_or(EmailError::Shape)?;
        if local.is_empty() || domain.is_empty() || domain.contains('@') {
            return Err(EmailError::Shape);
        }
        if local.len() > LOCAL_MAX_LEN {
            return Err(EmailError::LocalTooLong);
        }
        if !local.split('.').all(is_atom) {
            return Err(EmailError::Local);
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 || !labels.iter().all(|l| is_label(l)) {
            return Err(EmailError::Domain);
        }
        Ok(Self(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One dot-separated piece of the local part: non-empty RFC 5322 `atext`.
fn is_atom(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~-".contains(c))
}

/// One DNS label: letters and digits, with hyphens only inside.
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= LABEL_MAX_LEN
        && !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> Self {
        e.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_lower_cased() {
        assert_eq!(
            Email::parse("Ada.Lovelace@Example.COM").unwrap().as_str(),
            "ada.lovelace@example.com"
        );
    }

    #[test]
    fn plausible_addresses_are_accepted() {
        for ok in [
            "a@b.co",
            "first.last+tag@sub.example.org",
            "x_y-z@a-b.io",
            "o'neil@ex.ie",
            "1@2.3",
        ] {
            assert!(Email::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn malformed_addresses_are_rejected_with_a_reason() {
        let cases = [
            ("", EmailError::Empty),
            ("plain", EmailError::Shape),
            ("@example.com", EmailError::Shape),
            ("a@", EmailError::Shape),
            ("a@b@c.com", EmailError::Shape),
            (".a@b.com", EmailError::Local),
            ("a..b@c.com", EmailError::Local),
            ("a b@c.com", EmailError::Local),
            (" a@b.com", EmailError::Local),
            ("a@localhost", EmailError::Domain),
            ("a@-b.com", EmailError::Domain),
            ("a@b..com", EmailError::Domain),
            ("a@b.com ", EmailError::Domain),
            (
                &format!("{}@b.com", "x".repeat(65)),
                EmailError::LocalTooLong,
            ),
            (&format!("a@{}.com", "b".repeat(64)), EmailError::Domain),
        ];
        for (raw, want) in cases {
            assert_eq!(Email::parse(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn overlong_addresses_are_rejected() {
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Email::parse(&long), Err(EmailError::TooLong));
    }
}
