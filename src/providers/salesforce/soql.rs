//! SOQL text: quoting literals, writing date-times, recognising record ids, and splitting an
//! `IN (…)` list over as many queries as it takes to keep each request URL short.
//!
//! What it is not: a query builder. Field and object names come from configuration and are
//! written as given; only values (e-mails, contact ids, record ids) pass through [`literal`],
//! record ids only once [`is_record_id`] has accepted them, and date-times only as
//! [`datetime_literal`] writes a `DateTime`.
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_quotedstringescapes.htm

/// Longest percent-encoded `q=` value per query, in bytes. Salesforce refuses URI + headers
/// over 16,384 bytes (crm-apis.md §2.2); 12 KB of URL leaves room for the headers, and the
/// instance URL and path take at most about 1 KB of that.
pub const QUERY_BUDGET: usize = 11 * 1024;

/// A quoted SOQL string literal. Backslash and quote are escaped (as are line breaks and tabs,
/// which SOQL also only accepts escaped), so a value can never end the literal early.
pub fn literal(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// A SOQL date-time literal for `at`: unquoted `YYYY-MM-DDThh:mm:ssZ` in UTC, rounded down to
/// the second. Salesforce keeps date-times such as `SystemModstamp` to the second, so rounding
/// down keeps `>=` true for a record modified in the same second as `at`. Written from a
/// `DateTime`, never from text, so nothing but digits and separators reaches the query.
///
/// Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_dateformats.htm
pub fn datetime_literal(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Alphabet of the 18-character id's case-safety suffix: 0–25 → `A`–`Z`, 26–31 → `0`–`5`.
const SUFFIX_ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// Whether `id` is a Salesforce record id: 15 case-sensitive ASCII alphanumerics, or 18
/// case-insensitive ones whose 3-character suffix agrees with the first 15 (each suffix
/// character says which of 5 characters are upper-case letters, so a digit there is a
/// corrupt id). Anything else (`003' OR Name != '`) is no id and never reaches a query; the
/// suffix check keeps a corrupt id from failing a whole query with `invalid ID field`.
///
/// Vendor doc: the `CASESAFEID()` formula function; crm-apis.md §2.3.
pub fn is_record_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    if !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    match bytes.len() {
        15 => true,
        18 => bytes[..15]
            .chunks(5)
            .zip(&bytes[15..])
            .all(|(chunk, code)| {
                let upper = code.to_ascii_uppercase();
                let Some(bits) = SUFFIX_ALPHABET.iter().position(|c| *c == upper) else {
                    return false;
                };
                chunk
                    .iter()
                    .enumerate()
                    .all(|(i, c)| bits & (1 << i) == 0 || c.is_ascii_alphabetic())
            }),
        _ => false,
    }
}

/// `{head} IN ('v1','v2',…)` queries covering every value once, each at most `budget` bytes
/// once percent-encoded. `head` is e.g. `SELECT Id FROM Contact WHERE Email`. A single value
/// too long for the budget still gets a query of its own.
pub fn in_queries<'v>(
    head: &str,
    values: impl IntoIterator<Item = &'v str>,
    budget: usize,
) -> Vec<String> {
    let open = format!("{head} IN (");
    let fixed = encoded_len(&open) + encoded_len(")");
    let mut queries = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut size = fixed;
    let comma = encoded_len(",");
    for value in values {
        let lit = literal(value);
        let len = encoded_len(&lit);
        if !current.is_empty() && size + comma + len > budget {
            queries.push(format!("{open}{})", current.join(",")));
            current.clear();
            size = fixed;
        }
        // A comma before every literal but the first.
        size += len + if current.is_empty() { 0 } else { comma };
        current.push(lit);
    }
    if !current.is_empty() {
        queries.push(format!("{open}{})", current.join(",")));
    }
    queries
}

/// Length of `s` as a form-encoded query-string value, which is how it travels.
fn encoded_len(s: &str) -> usize {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .map(str::len)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_escape_backslash_and_quote() {
        assert_eq!(literal("o'neil@ex.ie"), r"'o\'neil@ex.ie'");
        assert_eq!(literal(r"a\b"), r"'a\\b'");
        assert_eq!(literal(r"\'"), r"'\\\''");
        assert_eq!(literal("x\ny"), r"'x\ny'");
        assert_eq!(literal(""), "''");
    }

    #[test]
    fn datetime_literals_are_utc_seconds_rounded_down() {
        let at: chrono::DateTime<chrono::Utc> = "2024-03-05T09:00:07.999+01:00".parse().unwrap();
        assert_eq!(datetime_literal(at), "2024-03-05T08:00:07Z");
        let early: chrono::DateTime<chrono::Utc> = "0999-01-02T03:04:05Z".parse().unwrap();
        assert_eq!(datetime_literal(early), "0999-01-02T03:04:05Z");
    }

    #[test]
    fn record_ids_are_15_or_18_alphanumerics_with_a_consistent_suffix() {
        // Salesforce's own example of the two forms of one id.
        for id in [
            "001A0000006Vm9r",
            "001A0000006Vm9rIAC",
            "001a0000006vm9riac",
            "003000000000000AAA",
        ] {
            assert!(is_record_id(id), "{id}");
        }
        for id in [
            "003' OR Name != '",
            "003000000000000'",
            "0030000000000",
            "003000000000000AA",
            "003000000000000AAAA",
            "003000000000000AA9",
            "003000000000000BAA",
            "003 00000000000",
            "",
        ] {
            assert!(!is_record_id(id), "{id}");
        }
    }

    #[test]
    fn a_short_list_is_one_query() {
        let q = in_queries(
            "SELECT Id FROM Contact WHERE Email",
            ["a@b.co", "c'd@e.fr"],
            QUERY_BUDGET,
        );
        assert_eq!(
            q,
            vec![r"SELECT Id FROM Contact WHERE Email IN ('a@b.co','c\'d@e.fr')"]
        );
        assert!(in_queries("SELECT Id FROM Contact WHERE Email", [], QUERY_BUDGET).is_empty());
    }

    #[test]
    fn long_lists_split_within_the_budget_and_keep_every_value() {
        let values: Vec<String> = (0..200)
            .map(|i| format!("{}{i}@example.com", "long.local.part".repeat(10)))
            .collect();
        let head = "SELECT Id, Email FROM Contact WHERE Email";
        let queries = in_queries(head, values.iter().map(String::as_str), QUERY_BUDGET);
        assert!(queries.len() > 1, "{} queries", queries.len());
        for q in &queries {
            assert!(encoded_len(q) <= QUERY_BUDGET, "{} bytes", encoded_len(q));
            assert!(q.starts_with(head) && q.ends_with(')'));
        }
        let joined = queries.join(" ");
        assert!(values.iter().all(|v| joined.contains(&literal(v))));
        let count: usize = queries
            .iter()
            .map(|q| q.matches("@example.com").count())
            .sum();
        assert_eq!(count, values.len());
    }

    #[test]
    fn a_value_over_the_budget_still_gets_a_query() {
        let q = in_queries(
            "SELECT Id FROM Contact WHERE Email",
            ["x".repeat(50).as_str()],
            10,
        );
        assert_eq!(q.len(), 1);
    }
}
