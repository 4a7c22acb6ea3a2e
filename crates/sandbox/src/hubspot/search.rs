//! `POST /crm/v3/objects/contacts/search`: filter groups (OR of ANDed filters), free-text
//! `query`, sorts, offset paging with HubSpot's limits (200 per page, 10,000 per query).
//! Archived contacts never appear; new ones can be hidden for `search_lag_ms` to mimic the
//! index lag.
//! <https://developers.hubspot.com/docs/api-reference/legacy/crm/search-the-crm>

use std::cmp::Ordering;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::counters::RecordsCarried;
use super::errors::ApiError;
use super::extract::HubJson;
use super::filter::{Filter, Operator, compare};
use super::schema::{PropertyKind, QUERY_SEARCHABLE, Schema};
use super::state::{AppState, lock};
use super::store::{Contact, Store};
use super::wire::{NextPage, Paging, SearchOut, Selection, contact_out};

const DEFAULT_LIMIT: i64 = 10;
const MAX_LIMIT: i64 = 200;
/// Results reachable by paging one query.
const MAX_REACHABLE: usize = 10_000;
/// Filter limits of the 2026 docs (5 groups, 6 per group, 18 in all); older pages said
/// 3/3/9 and 5/10/25, so these are the current rather than a certain value.
const MAX_GROUPS: usize = 5;
const MAX_FILTERS_PER_GROUP: usize = 6;
const MAX_FILTERS: usize = 18;

/// Search request body (`PublicObjectSearchRequest`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchIn {
    #[serde(default)]
    pub filter_groups: Vec<FilterGroupIn>,
    #[serde(default)]
    pub sorts: Vec<SortIn>,
    #[serde(default)]
    pub properties: Option<Vec<String>>,
    pub limit: Option<i64>,
    pub after: Option<Value>,
    pub query: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct FilterGroupIn {
    #[serde(default)]
    pub filters: Vec<FilterIn>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterIn {
    pub property_name: String,
    pub operator: String,
    pub value: Option<Value>,
    pub values: Option<Vec<Value>>,
    pub high_value: Option<Value>,
}

/// Sorts come as `"prop"` / `"-prop"` strings (the SDK's model) or as objects (the docs).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum SortIn {
    Name(String),
    Spec {
        #[serde(rename = "propertyName")]
        property_name: String,
        direction: Option<String>,
    },
}

pub async fn search(
    State(state): State<AppState>,
    HubJson(body): HubJson<SearchIn>,
) -> Result<Response, ApiError> {
    let lag_ms = lock(&state.faults).search_lag_ms;
    let plan = Plan::parse(body, &state.schema, lag_ms)?;
    let out = plan.run(&lock(&state.store), &state.schema);
    let carried = out.results.len();
    Ok((Extension(RecordsCarried(carried)), Json(out)).into_response())
}

/// A validated search request.
struct Plan {
    groups: Vec<Vec<Filter>>,
    sorts: Vec<(String, bool)>,
    /// Lower-cased free text, if any.
    query: Option<String>,
    selection: Selection,
    limit: usize,
    offset: usize,
    /// Records created later than this are not indexed yet.
    visible_before: DateTime<Utc>,
}

impl Plan {
    fn parse(body: SearchIn, schema: &Schema, lag_ms: u64) -> Result<Self, ApiError> {
        let limit = body.limit.unwrap_or(DEFAULT_LIMIT);
        let limit = usize::try_from(limit)
            .ok()
            .filter(|l| *l as i64 <= MAX_LIMIT)
            .ok_or_else(|| {
                ApiError::validation(format!(
                    "limit must be between 0 and {MAX_LIMIT}, got {limit}"
                ))
            })?;
        let lag = chrono::Duration::milliseconds(i64::try_from(lag_ms).unwrap_or(i64::MAX));
        Ok(Self {
            groups: parse_groups(&body.filter_groups, schema)?,
            sorts: parse_sorts(&body.sorts),
            query: body
                .query
                .map(|q| q.to_lowercase())
                .filter(|q| !q.is_empty()),
            selection: Selection::from_request(body.properties),
            limit,
            offset: parse_after(body.after.as_ref())?,
            visible_before: Utc::now() - lag,
        })
    }

    fn accepts(&self, c: &Contact) -> bool {
        let indexed = c.archived_at.is_none() && c.created_at <= self.visible_before;
        let filtered = self.groups.is_empty()
            || (self.groups.iter()).any(|g| g.iter().all(|f| f.matches(prop(c, &f.property))));
        let queried = (self.query.as_deref()).is_none_or(|q| matches_query(c, q));
        indexed && filtered && queried
    }

    fn run(&self, store: &Store, schema: &Schema) -> SearchOut {
        let mut hits: Vec<&Contact> = store.all().filter(|c| self.accepts(c)).collect();
        hits.sort_by(|a, b| order(a, b, &self.sorts, schema));
        let total = hits.len();
        let reachable = total.min(MAX_REACHABLE);
        let results: Vec<_> = hits
            .iter()
            .skip(self.offset)
            .take(self.limit.min(reachable.saturating_sub(self.offset)))
            .map(|c| contact_out(c, &self.selection, schema))
            .collect();
        let next = self.offset + results.len();
        let paging = (next < reachable && !results.is_empty()).then(|| Paging {
            next: NextPage {
                after: next.to_string(),
                link: None,
            },
        });
        SearchOut {
            total,
            results,
            paging,
        }
    }
}

fn prop<'a>(contact: &'a Contact, name: &str) -> Option<&'a str> {
    contact.properties.get(name).map(String::as_str)
}

/// `after` is an offset; paging to or past 10,000 is a 400.
fn parse_after(after: Option<&Value>) -> Result<usize, ApiError> {
    let text = match after {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::String(s)) if s.is_empty() => return Ok(0),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let offset: usize = text
        .parse()
        .map_err(|_| ApiError::validation(format!("Invalid paging cursor after={text}")))?;
    if offset >= MAX_REACHABLE {
        return Err(ApiError::validation(format!(
            "Paging past {MAX_REACHABLE} results is not supported (after={offset})"
        )));
    }
    Ok(offset)
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn parse_groups(groups: &[FilterGroupIn], schema: &Schema) -> Result<Vec<Vec<Filter>>, ApiError> {
    let total: usize = groups.iter().map(|g| g.filters.len()).sum();
    if groups.len() > MAX_GROUPS
        || total > MAX_FILTERS
        || groups
            .iter()
            .any(|g| g.filters.len() > MAX_FILTERS_PER_GROUP)
    {
        return Err(ApiError::validation(format!(
            "Too many filters: at most {MAX_GROUPS} filterGroups, {MAX_FILTERS_PER_GROUP} filters \
             per group and {MAX_FILTERS} filters in total are allowed"
        )));
    }
    let parse = |f: &FilterIn| -> Result<Filter, ApiError> {
        let operator = Operator::parse(&f.operator).ok_or_else(|| {
            ApiError::validation(format!("Unknown filter operator {}", f.operator))
        })?;
        let needs_value = !matches!(
            operator,
            Operator::HasProperty | Operator::NotHasProperty | Operator::In | Operator::NotIn
        );
        if needs_value && f.value.is_none() {
            return Err(ApiError::validation(format!(
                "Filter on {} needs a value",
                f.property_name
            )));
        }
        Ok(Filter {
            property: f.property_name.clone(),
            operator,
            kind: schema
                .find(&f.property_name)
                .map_or(PropertyKind::Text, |d| d.kind),
            value: f.value.as_ref().map(scalar),
            values: f.values.iter().flatten().map(scalar).collect(),
            high_value: f.high_value.as_ref().map(scalar),
        })
    };
    groups
        .iter()
        .map(|g| g.filters.iter().map(parse).collect())
        .collect()
}

/// (property, descending) pairs; unset values sort last, ties by id.
fn parse_sorts(sorts: &[SortIn]) -> Vec<(String, bool)> {
    sorts
        .iter()
        .map(|s| match s {
            SortIn::Name(name) => match name.strip_prefix('-') {
                Some(stripped) => (stripped.to_owned(), true),
                None => (name.clone(), false),
            },
            SortIn::Spec {
                property_name,
                direction,
            } => {
                let descending = direction
                    .as_deref()
                    .is_some_and(|d| d.eq_ignore_ascii_case("DESCENDING"));
                (property_name.clone(), descending)
            }
        })
        .collect()
}

fn order(a: &Contact, b: &Contact, sorts: &[(String, bool)], schema: &Schema) -> Ordering {
    for (name, descending) in sorts {
        let kind = schema.find(name).map_or(PropertyKind::Text, |d| d.kind);
        let ord = match (prop(a, name), prop(b, name)) {
            (Some(x), Some(y)) => {
                let o = compare(kind, x, y).unwrap_or(Ordering::Equal);
                if *descending { o.reverse() } else { o }
            }
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.id.cmp(&b.id)
}

/// Free-text `query`: a case-insensitive substring of one of the default searchable
/// properties (HubSpot matches tokens and prefixes; a substring is close enough here).
fn matches_query(contact: &Contact, query: &str) -> bool {
    QUERY_SEARCHABLE
        .iter()
        .filter_map(|name| prop(contact, name))
        .any(|v| v.to_lowercase().contains(query))
}
