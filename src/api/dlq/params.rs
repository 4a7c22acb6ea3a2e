//! Extractors of the admin API: the entry id from the path and each operation's query.
//!
//! Every bad value is a 400 naming its parameter. Unknown parameters are ignored, as elsewhere
//! in the API, but a dead-letter parameter an operation does not take is refused: a bulk replay
//! or discard that silently ignored `limit` would act on far more than the caller meant.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::api::problem::ApiError;
use crate::domain::Crm;
use crate::store::dead_letters::{Filter, Status};

/// Bounds of `limit` on `GET /dlq`.
pub const LIMIT_MAX: i64 = 500;
pub const LIMIT_DEFAULT: i64 = 100;
/// Longest `error_code` filter, in characters.
pub const ERROR_CODE_MAX_LEN: usize = 200;

/// The `{id}` path segment of a dead-letter entry.
pub struct EntryPath(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for EntryPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        crate::api::extract::uuid_path(parts, state, "dead-letter entry", "entry")
            .await
            .map(Self)
    }
}

/// A parsed query; which parts are allowed depends on the operation.
#[derive(Debug, Default)]
pub struct Query {
    pub filter: Filter,
    pub limit: Option<i64>,
    pub cursor: Option<Uuid>,
    pub all: Option<bool>,
}

impl Query {
    /// True when at least one filter is given.
    pub fn is_filtered(&self) -> bool {
        let f = &self.filter;
        f.crm.is_some()
            || f.error_code.is_some()
            || f.status.is_some()
            || f.contact_id.is_some()
            || f.since.is_some()
            || f.until.is_some()
    }
}

/// The query of `GET /dlq`: filters and paging.
pub struct ListQuery(pub Query);
/// The query of `POST /dlq/replay`: filters.
pub struct ReplayQuery(pub Query);
/// The query of `POST /dlq/discard`: filters and `all`.
pub struct DiscardQuery(pub Query);
/// The query of `GET /admin/audit` and `GET /admin/jobs`: paging only.
pub struct AuditQuery(pub Query);

/// Parameters every operation on many entries takes.
const FILTERS: &[&str] = &[
    "crm",
    "error_code",
    "status",
    "contact_id",
    "since",
    "until",
];

/// Parameters only some operations take.
const OPERATION_PARAMS: &[&str] = &["limit", "cursor", "all"];

/// Implements an operation's query extractor: the filters plus the named extra parameters.
macro_rules! query_extractor {
    ($ty:ident => $filters:expr, [$($extra:literal),*]) => {
        impl<S: Send + Sync> FromRequestParts<S> for $ty {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
                parse_with(parts.uri.query().unwrap_or(""), $filters, &[$($extra),*]).map(Self)
            }
        }
    };
}

query_extractor!(ListQuery => FILTERS, ["limit", "cursor"]);
query_extractor!(ReplayQuery => FILTERS, []);
query_extractor!(DiscardQuery => FILTERS, ["all"]);
// The audit log and the jobs are not filtered by entry: a dead-letter filter there is refused,
// not ignored.
query_extractor!(AuditQuery => &[], ["limit", "cursor"]);

/// Cuts rows fetched with one extra (`limit + 1`, which tells whether another page exists) to
/// a page, with the cursor of the next page: the last row's id, when there is one.
pub fn page<R>(mut rows: Vec<R>, limit: i64, id: impl Fn(&R) -> Uuid) -> (Vec<R>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    let next_cursor = if more {
        rows.last().map(|r| id(r).to_string())
    } else {
        None
    };
    (rows, next_cursor)
}

/// Parses `raw`, accepting the filters and `extra`; every problem is reported at once.
pub fn parse(raw: &str, extra: &[&str]) -> Result<Query, ApiError> {
    parse_with(raw, FILTERS, extra)
}

/// Parses `raw`, accepting `filters` (some of [`FILTERS`]) and `extra`.
fn parse_with(raw: &str, filters: &[&str], extra: &[&str]) -> Result<Query, ApiError> {
    let mut q = Query::default();
    let mut errors: Vec<(String, String)> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        let name = name.into_owned();
        let n = name.as_str();
        if (OPERATION_PARAMS.contains(&n) && !extra.contains(&n))
            || (FILTERS.contains(&n) && !filters.contains(&n))
        {
            errors.push((name, "is not accepted by this operation".into()));
            continue;
        }
        if !FILTERS.contains(&n) && !OPERATION_PARAMS.contains(&n) {
            // Unknown parameters are ignored, as HTTP APIs conventionally do.
            continue;
        }
        if seen.contains(&name) {
            errors.push((name, "given more than once".into()));
            continue;
        }
        seen.push(name.clone());
        if let Err(message) = set(&mut q, &name, &value) {
            errors.push((name, message));
        }
    }
    if errors.is_empty() {
        Ok(q)
    } else {
        Err(ApiError::BadParameters(errors))
    }
}

fn set(q: &mut Query, name: &str, value: &str) -> Result<(), String> {
    let f = &mut q.filter;
    match name {
        "crm" => {
            let crm: Crm = value.parse()?;
            f.crm = Some(crm.as_str().to_owned());
        }
        "error_code" => f.error_code = Some(error_code(value)?),
        "status" => {
            f.status =
                Some(Status::parse(value).ok_or("must be one of retrying, replayed, parked")?);
        }
        "contact_id" => f.contact_id = Some(uuid(value, "must be a contact id (a UUID)")?),
        "since" => f.since = Some(timestamp(value)?),
        "until" => f.until = Some(timestamp(value)?),
        "limit" => match value.parse::<i64>() {
            Ok(n) if (1..=LIMIT_MAX).contains(&n) => q.limit = Some(n),
            _ => return Err(format!("must be a whole number from 1 to {LIMIT_MAX}")),
        },
        "cursor" => {
            q.cursor = Some(uuid(
                value,
                "is not a cursor this API issued; pass next_cursor from the previous page",
            )?);
        }
        "all" => {
            q.all = Some(match value {
                "true" => true,
                "false" => false,
                _ => return Err("must be true or false".into()),
            });
        }
        _ => {}
    }
    Ok(())
}

fn error_code(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.chars().count() > ERROR_CODE_MAX_LEN {
        return Err(format!("must be at most {ERROR_CODE_MAX_LEN} characters"));
    }
    // Postgres refuses NUL in text, and no error code has a control character; the spec
    // states the same rule as a pattern.
    if value.chars().any(|c| (c as u32) < 0x20 || c == '\u{7f}') {
        return Err("must not contain control characters".into());
    }
    Ok(value.to_owned())
}

fn uuid(value: &str, message: &str) -> Result<Uuid, String> {
    Uuid::parse_str(value).map_err(|_| message.to_owned())
}

fn timestamp(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "must be an RFC 3339 timestamp, e.g. 2026-01-31T09:00:00Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(e: ApiError) -> Vec<(String, String)> {
        match e {
            ApiError::BadParameters(p) => p,
            other => panic!("expected bad parameters, got {other:?}"),
        }
    }

    #[test]
    fn filters_parse_and_unknown_parameters_are_ignored() {
        let q = parse(
            "crm=hubspot&error_code=INVALID_EMAIL&status=parked&contact_id=0190b5c2-7a4e-7000-8000-000000000001\
             &since=2026-01-01T00:00:00%2B01:00&until=2026-02-01T00:00:00Z&limit=7&cursor=0190b5c2-7a4e-7000-8000-000000000002&x=1",
            &["limit", "cursor"],
        )
        .unwrap();
        assert_eq!(q.filter.crm.as_deref(), Some("hubspot"));
        assert_eq!(q.filter.status, Some(Status::Parked));
        assert_eq!(
            q.filter.since.unwrap().to_rfc3339(),
            "2025-12-31T23:00:00+00:00"
        );
        assert_eq!(q.limit, Some(7));
        assert!(q.cursor.is_some() && q.is_filtered());
        assert!(!parse("", &[]).unwrap().is_filtered());
    }

    #[test]
    fn every_bad_value_is_reported_with_its_parameter() {
        let p = problems(
            parse(
                "crm=pipedrive&status=gone&contact_id=x&since=yesterday&limit=501&cursor=nope&error_code=",
                &["limit", "cursor"],
            )
            .unwrap_err(),
        );
        let names: Vec<&str> = p.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "crm",
                "status",
                "contact_id",
                "since",
                "limit",
                "cursor",
                "error_code"
            ]
        );
    }

    #[test]
    fn parameters_of_other_operations_and_repeats_are_refused() {
        let p = problems(parse("limit=5&all=true", &[]).unwrap_err());
        assert_eq!(p.len(), 2, "{p:?}");
        let p = problems(parse("crm=hubspot&crm=salesforce", &[]).unwrap_err());
        assert_eq!(p[0].1, "given more than once");
        let p = problems(parse("all=yes", &["all"]).unwrap_err());
        assert_eq!(p[0].0, "all");
        let p = problems(parse("error_code=A%00B", &[]).unwrap_err());
        assert_eq!(p[0].0, "error_code");
        // The audit log's query takes paging and no filter.
        let p = problems(parse_with("crm=hubspot&limit=3", &[], &["limit", "cursor"]).unwrap_err());
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "crm");
        let q = parse_with("limit=3", &[], &["limit", "cursor"]).unwrap();
        assert_eq!(q.limit, Some(3));
    }
}
