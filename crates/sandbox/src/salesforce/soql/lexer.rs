//! Splits a SOQL string into tokens: words, quoted strings (with backslash escapes), numbers,
//! unquoted date-time literals and operators.
//!
//! What it is not: the grammar, which is the parent module's.

use chrono::{DateTime, Utc};

use super::unexpected;
use crate::salesforce::errors::SfError;

/// One token of a query.

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Token {
    Word(String),
    Text(String),
    Number(String),
    DateTime(DateTime<Utc>),
    Sym(&'static str),
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Word(w) | Self::Number(w) => f.write_str(w),
            Self::Text(t) => write!(f, "'{t}'"),
            Self::DateTime(d) => write!(f, "{}", d.to_rfc3339()),
            Self::Sym(s) => f.write_str(s),
        }
    }
}

pub(super) fn tokenize(q: &str) -> Result<Vec<Token>, SfError> {
    let chars: Vec<char> = q.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let (text, next) = read_string(&chars, i + 1)?;
            out.push(Token::Text(text));
            i = next;
        } else if let Some(sym) = ["!=", "<>", "<=", ">="].into_iter().find(|s| *s == two) {
            out.push(Token::Sym(sym));
            i += 2;
        } else if let Some(sym) = ["=", "<", ">", "(", ")", ","]
            .into_iter()
            .find(|s| s.starts_with(c))
        {
            out.push(Token::Sym(sym));
            i += 1;
        } else if c.is_ascii_digit() {
            let end = run_end(&chars, i, |c| {
                c.is_ascii_alphanumeric() || ":.+-".contains(c)
            });
            let word: String = chars[i..end].iter().collect();
            out.push(number_or_datetime(&word)?);
            i = end;
        } else if c.is_alphabetic() || c == '_' {
            let end = run_end(&chars, i, |c| c.is_alphanumeric() || c == '_' || c == '.');
            out.push(Token::Word(chars[i..end].iter().collect()));
            i = end;
        } else {
            return Err(unexpected(c));
        }
    }
    Ok(out)
}

fn run_end(chars: &[char], start: usize, keep: impl Fn(char) -> bool) -> usize {
    chars[start..]
        .iter()
        .position(|c| !keep(*c))
        .map_or(chars.len(), |n| start + n)
}

/// Reads a quoted string starting after the opening quote; returns it and the index after
/// the closing quote. Backslash escapes as in SOQL.
fn read_string(chars: &[char], mut i: usize) -> Result<(String, usize), SfError> {
    let mut text = String::new();
    while i < chars.len() {
        match chars[i] {
            '\'' => return Ok((text, i + 1)),
            '\\' if i + 1 < chars.len() => {
                text.push(match chars[i + 1] {
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    other => other,
                });
                i += 2;
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
    Err(SfError::malformed_query("unterminated string literal"))
}

fn number_or_datetime(word: &str) -> Result<Token, SfError> {
    if word.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Token::Number(word.to_string()));
    }
    DateTime::parse_from_rfc3339(word)
        .or_else(|_| DateTime::parse_from_str(word, "%Y-%m-%dT%H:%M:%S%.f%z"))
        .map(|d| Token::DateTime(d.with_timezone(&Utc)))
        .map_err(|_| {
            SfError::malformed_query(format!(
                "invalid date-time literal '{word}': use YYYY-MM-DDThh:mm:ss[.sss](Z|+hh:mm), unquoted"
            ))
        })
}
