//! Request extractors that fail with problem documents instead of axum's plain-text rejections:
//! a size- and media-type-checked JSON body (required, or optional), a contact id from the
//! path, and the list query.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header, request::Parts};
use serde_json::Value;

use super::AppState;
use super::problem::ApiError;
use crate::domain::ContactId;

/// Media types a body may be sent as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` only (POST, PUT).
    Json,
    /// `application/merge-patch+json` (RFC 7396) or `application/json` (PATCH).
    MergePatch,
}

/// A JSON request body, parsed but not yet validated.
pub struct JsonBody<const MERGE: bool>(pub Value);

impl<const MERGE: bool> FromRequest<AppState> for JsonBody<MERGE> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let kind = if MERGE {
            BodyKind::MergePatch
        } else {
            BodyKind::Json
        };
        check_media_type(req.headers(), kind)?;
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Err(ApiError::MalformedJson("the body is empty".into()));
        }
        parse(&bytes).map(Self)
    }
}

/// An optional `application/json` body, parsed but not yet validated: `None` when the request
/// has none (no bytes, whatever its `Content-Type`), for operations whose every member has a
/// default.
pub struct OptionalJsonBody(pub Option<Value>);

impl FromRequest<AppState> for OptionalJsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        // The media type matters only if there is a body.
        let media_type = check_media_type(req.headers(), BodyKind::Json);
        let bytes = read_body(req, state).await?;
        if bytes.is_empty() {
            return Ok(Self(None));
        }
        media_type?;
        parse(&bytes).map(|v| Self(Some(v)))
    }
}

/// Reads the body, refusing one over the size limit.
async fn read_body(req: Request, state: &AppState) -> Result<axum::body::Bytes, ApiError> {
    let limit = state.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|e| {
            // `to_bytes` reports a length-limit error through its source chain.
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::MalformedJson(format!("could not read the body: {e}"))
            }
        })
}

fn parse(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))
}

fn check_media_type(headers: &HeaderMap, kind: BodyKind) -> Result<(), ApiError> {
    let accepted = match kind {
        BodyKind::Json => "application/json",
        BodyKind::MergePatch => "application/merge-patch+json or application/json",
    };
    let Some(raw) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type is missing; send {accepted}"
        )));
    };
    let essence = raw
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let ok = essence == "application/json"
        || (kind == BodyKind::MergePatch && essence == "application/merge-patch+json");
    if ok {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type '{essence}' is not supported; send {accepted}"
        )))
    }
}

/// The `{id}` path segment of a contact.
pub struct ContactPath(pub ContactId);

impl<S: Send + Sync> FromRequestParts<S> for ContactPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        uuid_path(parts, state, "contact", "contact")
            .await
            .map(|id| Self(ContactId(id)))
    }
}

/// The `{id}` path segment as a UUID. Anything else cannot name a `what`: 404, saying so
/// (`kind` names the ids: "`kind` ids are UUIDs").
pub async fn uuid_path<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    what: &str,
    kind: &str,
) -> Result<uuid::Uuid, ApiError> {
    let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
        .await
        .map_err(|_| ApiError::NotFound(format!("no such {what}")))?;
    uuid::Uuid::parse_str(&raw)
        .map_err(|_| ApiError::NotFound(format!("no {what} has id '{raw}' ({kind} ids are UUIDs)")))
}

/// The query of `GET /contacts`.
#[derive(Debug, Default)]
pub struct ListQuery {
    pub email: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Bounds of `limit` on `GET /contacts`.
pub const LIST_LIMIT_MAX: i64 = 200;
pub const LIST_LIMIT_DEFAULT: i64 = 50;

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let mut q = ListQuery::default();
        let mut errors = Vec::new();
        let raw = parts.uri.query().unwrap_or("");
        for (name, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let slot = match name.as_ref() {
                "email" => &mut q.email,
                "cursor" => &mut q.cursor,
                "limit" => {
                    match value.parse::<i64>() {
                        Ok(n) if (1..=LIST_LIMIT_MAX).contains(&n) => q.limit = Some(n),
                        _ => errors.push((
                            "limit".to_owned(),
                            format!("must be a whole number from 1 to {LIST_LIMIT_MAX}"),
                        )),
                    }
                    continue;
                }
                // Unknown parameters are ignored, as HTTP APIs conventionally do.
                _ => continue,
            };
            if slot.is_some() {
                errors.push((name.to_string(), "given more than once".to_owned()));
            }
            *slot = Some(value.into_owned());
        }
        if q.email
            .as_ref()
            .is_some_and(|e| e.chars().count() > crate::domain::email::EMAIL_MAX_LEN)
        {
            errors.push((
                "email".into(),
                format!(
                    "must be at most {} characters",
                    crate::domain::email::EMAIL_MAX_LEN
                ),
            ));
        }
        // Postgres refuses NUL in text, and no e-mail address has a control character; the
        // spec states the same rule as a pattern.
        if q.email
            .as_ref()
            .is_some_and(|v| v.chars().any(|c| (c as u32) < 0x20 || c == '\u{7f}'))
        {
            errors.push(("email".into(), "must not contain control characters".into()));
        }
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(ApiError::BadParameters(errors))
        }
    }
}

/// Reads the optional `Idempotency-Key` header: 1 to 255 printable ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("");
    if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::BadParameters(vec![(
            "Idempotency-Key".into(),
            "must be 1 to 255 printable ASCII characters without spaces (a UUID is a good choice)"
                .into(),
        )]));
    }
    Ok(Some(s.to_owned()))
}
