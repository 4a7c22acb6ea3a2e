//! Secrets: values such as keys, tokens and URLs with passwords that must never be printed.
//!
//! Depends on nothing, so configuration, providers and the API can all hold secrets without
//! depending on each other.

use std::fmt;

/// A value that must never be printed: its `Debug` shows `[redacted]`, and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}
