//! Single-record contact endpoints: create, read (by id or unique property), partial
//! update, archive, and the paged list.
//! <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>

use axum::Extension;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use chrono::Utc;

use super::counters::RecordsCarried;
use super::errors::ApiError;
use super::extract::HubJson;
use super::state::{AppState, lock};
use super::webhooks::ChangeSource;
use super::wire::{
    ListOut, NextPage, Paging, PropertiesIn, ReadQuery, Selection, contact_out, stringify,
};

/// Default and largest page of the list endpoint.
const LIST_DEFAULT_LIMIT: usize = 10;
const LIST_MAX_LIMIT: usize = 100;

type Handled = Result<axum::response::Response, ApiError>;

pub async fn create(
    State(state): State<AppState>,
    HubJson(body): HubJson<PropertiesIn>,
) -> Handled {
    // The contacts guide asks for one of email/firstname/lastname, the objects guide
    // requires none; like the live API, an empty create is accepted.
    let props = stringify(&body.properties);
    let written = lock(&state.store).create(&props, Utc::now())?;
    state.committed(1, &written.changes, ChangeSource::Integration);
    let out = contact_out(
        &written.contact,
        &Selection::Written(written.touched),
        &state.schema,
    );
    Ok((StatusCode::CREATED, Extension(RecordsCarried(1)), Json(out)).into_response())
}

pub async fn read(
    State(state): State<AppState>,
    Path(contact_id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Handled {
    let query = ReadQuery::parse(raw.as_deref());
    let store = lock(&state.store);
    let found = store.find(query.id_property.as_deref(), &contact_id, query.archived)?;
    let contact = found.ok_or_else(ApiError::not_found)?;
    let out = contact_out(
        contact,
        &Selection::from_request(query.properties),
        &state.schema,
    );
    Ok((Extension(RecordsCarried(1)), Json(out)).into_response())
}

pub async fn update(
    State(state): State<AppState>,
    Path(contact_id): Path<String>,
    RawQuery(raw): RawQuery,
    HubJson(body): HubJson<PropertiesIn>,
) -> Handled {
    let query = ReadQuery::parse(raw.as_deref());
    let props = stringify(&body.properties);
    let written = {
        let mut store = lock(&state.store);
        let found = store.find(query.id_property.as_deref(), &contact_id, false)?;
        let id = found.ok_or_else(ApiError::not_found)?.id;
        store.update(id, &props, Utc::now())?
    };
    state.committed(1, &written.changes, ChangeSource::Integration);
    let out = contact_out(
        &written.contact,
        &Selection::Written(written.touched),
        &state.schema,
    );
    Ok((Extension(RecordsCarried(1)), Json(out)).into_response())
}

/// Archiving an unknown or already archived id still answers 204 (idempotent, as the
/// live API is commonly reported to behave) [UNVERIFIED].
pub async fn archive(State(state): State<AppState>, Path(contact_id): Path<String>) -> Handled {
    let change = contact_id
        .parse::<u64>()
        .ok()
        .and_then(|id| lock(&state.store).archive(id, Utc::now()));
    let changes: Vec<_> = change.into_iter().collect();
    state.committed(changes.len(), &changes, ChangeSource::Integration);
    Ok((StatusCode::NO_CONTENT, Extension(RecordsCarried(1))).into_response())
}

/// `after` is the id of the first record of the next page. A `limit` above 100 is
/// clamped rather than refused [UNVERIFIED: the docs only state the maximum].
pub async fn list(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Handled {
    let query = ReadQuery::parse(raw.as_deref());
    let limit = parse_number(query.limit.as_deref(), "limit")?
        .map_or(LIST_DEFAULT_LIMIT, |l| l.clamp(1, LIST_MAX_LIMIT));
    let after = parse_number(query.after.as_deref(), "after")?.unwrap_or(0) as u64;
    let selection = Selection::from_request(query.properties);
    let store = lock(&state.store);
    let mut page: Vec<_> = store
        .range_from(after)
        .filter(|c| c.archived_at.is_some() == query.archived)
        .take(limit + 1)
        .collect();
    let next = (page.len() > limit).then(|| page.remove(limit).id);
    let results: Vec<_> = page
        .iter()
        .map(|c| contact_out(c, &selection, &state.schema))
        .collect();
    drop(store);
    let count = results.len();
    let paging = next.map(|after| Paging {
        next: NextPage {
            after: after.to_string(),
            link: Some(next_link(&headers, after, limit)),
        },
    });
    Ok((
        Extension(RecordsCarried(count)),
        Json(ListOut { results, paging }),
    )
        .into_response())
}

fn next_link(headers: &HeaderMap, after: u64, limit: usize) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/crm/v3/objects/contacts?after={after}&limit={limit}")
}

/// Parses a numeric query parameter, answering HubSpot's 400 for garbage.
pub fn parse_number(raw: Option<&str>, name: &str) -> Result<Option<usize>, ApiError> {
    raw.map(|v| {
        v.trim().parse::<usize>().map_err(|_| {
            ApiError::validation(format!("Unable to parse {name} value '{v}' as a number"))
        })
    })
    .transpose()
}
