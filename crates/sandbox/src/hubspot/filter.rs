//! Evaluation of search filters against a contact: HubSpot's operators, its case rules and
//! its date handling (epoch-millisecond strings or ISO-8601).
//!
//! Pure functions; the search route parses requests and pages results.
//! <https://developers.hubspot.com/docs/api-reference/legacy/crm/search-the-crm>

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate};

use super::schema::PropertyKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Between,
    In,
    NotIn,
    HasProperty,
    NotHasProperty,
    ContainsToken,
    NotContainsToken,
}

impl Operator {
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "EQ" => Self::Eq,
            "NEQ" => Self::Neq,
            "LT" => Self::Lt,
            "LTE" => Self::Lte,
            "GT" => Self::Gt,
            "GTE" => Self::Gte,
            "BETWEEN" => Self::Between,
            "IN" => Self::In,
            "NOT_IN" => Self::NotIn,
            "HAS_PROPERTY" => Self::HasProperty,
            "NOT_HAS_PROPERTY" => Self::NotHasProperty,
            "CONTAINS_TOKEN" => Self::ContainsToken,
            "NOT_CONTAINS_TOKEN" => Self::NotContainsToken,
            _ => return None,
        })
    }
}

/// A parsed filter. Filters on properties the account lacks behave as on unset ones.
#[derive(Clone, Debug)]
pub struct Filter {
    pub property: String,
    pub operator: Operator,
    pub kind: PropertyKind,
    pub value: Option<String>,
    pub values: Vec<String>,
    pub high_value: Option<String>,
}

impl Filter {
    /// Whether a contact whose property holds `stored` (None = unset) passes.
    pub fn matches(&self, stored: Option<&str>) -> bool {
        let stored = stored.filter(|s| !s.is_empty());
        let wanted = self.value.as_deref().unwrap_or("");
        let cmp = |w: &str| stored.and_then(|s| compare(self.kind, s, w));
        match self.operator {
            Operator::HasProperty => stored.is_some(),
            Operator::NotHasProperty => stored.is_none(),
            Operator::Eq => cmp(wanted) == Some(Ordering::Equal),
            // An unset property is "not equal" to any value.
            Operator::Neq => cmp(wanted) != Some(Ordering::Equal),
            Operator::Lt => cmp(wanted) == Some(Ordering::Less),
            Operator::Lte => matches!(cmp(wanted), Some(Ordering::Less | Ordering::Equal)),
            Operator::Gt => cmp(wanted) == Some(Ordering::Greater),
            Operator::Gte => matches!(cmp(wanted), Some(Ordering::Greater | Ordering::Equal)),
            Operator::Between => {
                let high = self.high_value.as_deref().unwrap_or("");
                matches!(cmp(wanted), Some(Ordering::Greater | Ordering::Equal))
                    && matches!(cmp(high), Some(Ordering::Less | Ordering::Equal))
            }
            Operator::In => stored.is_some_and(|s| self.in_values(s)),
            Operator::NotIn => !stored.is_some_and(|s| self.in_values(s)),
            Operator::ContainsToken => stored.is_some_and(|s| contains_token(s, wanted)),
            Operator::NotContainsToken => !stored.is_some_and(|s| contains_token(s, wanted)),
        }
    }

    /// `IN`/`NOT_IN` string values must be given lower-case: the stored value is
    /// lower-cased (enumerations excepted) and compared exactly, so `"Ada"` never matches.
    fn in_values(&self, stored: &str) -> bool {
        match self.kind {
            PropertyKind::Enumeration => self.values.iter().any(|v| v == stored),
            PropertyKind::DateTime | PropertyKind::Number => self
                .values
                .iter()
                .any(|v| compare(self.kind, stored, v) == Some(Ordering::Equal)),
            PropertyKind::Text | PropertyKind::Email => {
                let lowered = stored.to_lowercase();
                self.values.contains(&lowered)
            }
        }
    }
}

/// Orders a stored value against a filter or sort value: dates by epoch ms, numbers
/// numerically, enumerations exactly, other text case-insensitively.
pub fn compare(kind: PropertyKind, stored: &str, wanted: &str) -> Option<Ordering> {
    match kind {
        PropertyKind::DateTime => Some(epoch_ms(stored)?.cmp(&epoch_ms(wanted)?)),
        PropertyKind::Enumeration => Some(stored.cmp(wanted)),
        PropertyKind::Number | PropertyKind::Text | PropertyKind::Email => {
            match (stored.trim().parse::<f64>(), wanted.trim().parse::<f64>()) {
                (Ok(a), Ok(b)) => a.partial_cmp(&b),
                _ => Some(stored.to_lowercase().cmp(&wanted.to_lowercase())),
            }
        }
    }
}

/// Epoch milliseconds from `1709251200000`, `2024-03-01T00:00:00.000Z` or `2024-03-01`.
pub fn epoch_ms(value: &str) -> Option<i64> {
    let value = value.trim();
    if let Ok(ms) = value.parse::<i64>() {
        return Some(ms);
    }
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Some(at.timestamp_millis());
    }
    let date = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// Token match, case-insensitive; `*` in the wanted token is a wildcard
/// (e.g. `*@example.com`). Tokens are split on whitespace.
fn contains_token(stored: &str, wanted: &str) -> bool {
    let wanted = wanted.to_lowercase();
    stored
        .to_lowercase()
        .split_whitespace()
        .any(|token| glob(token, &wanted))
}

fn glob(text: &str, pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return text == pattern;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(pos) => rest = &rest[pos + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(op: Operator, kind: PropertyKind, value: &str, values: &[&str]) -> Filter {
        Filter {
            property: "p".into(),
            operator: op,
            kind,
            value: Some(value.into()),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
            high_value: None,
        }
    }

    #[test]
    fn eq_is_case_insensitive_but_in_wants_lower_case_values() {
        let eq = filter(Operator::Eq, PropertyKind::Email, "ADA@example.com", &[]);
        assert!(eq.matches(Some("ada@example.com")));
        let lower = filter(Operator::In, PropertyKind::Text, "", &["ada"]);
        assert!(lower.matches(Some("Ada")));
        let upper = filter(Operator::In, PropertyKind::Text, "", &["Ada"]);
        assert!(!upper.matches(Some("Ada")));
    }

    #[test]
    fn dates_compare_as_epoch_ms_whatever_the_notation() {
        let gt = filter(Operator::Gt, PropertyKind::DateTime, "1709251200000", &[]);
        assert!(gt.matches(Some("2024-03-01T00:00:00.001Z")));
        assert!(!gt.matches(Some("2024-03-01T00:00:00.000Z")));
        let lte = filter(
            Operator::Lte,
            PropertyKind::DateTime,
            "2024-03-01T00:00:00Z",
            &[],
        );
        assert!(lte.matches(Some("2024-02-29T23:59:59.999Z")));
    }

    #[test]
    fn neq_and_not_has_property_match_unset_values() {
        assert!(filter(Operator::Neq, PropertyKind::Text, "x", &[]).matches(None));
        assert!(filter(Operator::NotHasProperty, PropertyKind::Text, "", &[]).matches(Some("")));
        assert!(!filter(Operator::HasProperty, PropertyKind::Text, "", &[]).matches(None));
    }

    #[test]
    fn contains_token_supports_wildcards() {
        let f = filter(
            Operator::ContainsToken,
            PropertyKind::Email,
            "*@example.com",
            &[],
        );
        assert!(f.matches(Some("ada@example.com")));
        assert!(!f.matches(Some("ada@example.org")));
    }
}
