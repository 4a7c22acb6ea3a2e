//! The admin API of push subscriptions: what it answers (`…Out`) and how request bodies are
//! read into checked values (every problem named by its JSON pointer, 422).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::config::{OutboundUrlError, outbound_url};
use crate::domain::fields::FieldError;
use crate::store::subscriptions::{DeliveryRow, Patch, Start, SubscriptionRow};

/// Longest target URL, in characters.
const URL_MAX: usize = 2048;
/// Longest description, in characters.
const DESCRIPTION_MAX: usize = 500;
/// How long a rotated-out secret keeps signing when the rotation does not say, in seconds (a
/// day, as Svix keeps one): time for receivers to deploy the new secret.
const OVERLAP_DEFAULT_SECS: u64 = 86_400;
/// The longest overlap a rotation may ask, in seconds (a week): a replaced secret, possibly
/// leaked, should not sign for long.
const OVERLAP_MAX_SECS: u64 = 604_800;

/// A subscription and how far its delivery is.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionOut {
    pub id: Uuid,
    /// Where each change is POSTed.
    pub url: String,
    pub description: Option<String>,
    pub enabled: bool,
    /// `active` (delivering, or caught up), `failing` (the last attempt failed; retried with
    /// backoff) or `disabled` (by an admin, or by SyncRoot after failing for too long).
    pub status: SubscriptionStatus,
    /// Why SyncRoot disabled it; null when enabled or disabled by an admin.
    pub disabled_reason: Option<String>,
    /// The feed position of the last change the subscriber acknowledged (a `GET /changes`
    /// cursor); the next delivery is the entry after it.
    pub cursor: String,
    /// Changes in the feed after the cursor, not yet delivered (counted up to 10,000).
    pub pending: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// The last failure: `HTTP <status>` or the transport error.
    pub last_error: Option<String>,
    /// Failed attempts since the last success.
    pub consecutive_failures: i32,
    /// When the current run of failures began; null after a success.
    pub failing_since: Option<DateTime<Utc>>,
    /// When the sender tries next.
    pub next_attempt_at: DateTime<Utc>,
    /// Until when the secret the last rotation replaced still signs deliveries, beside the
    /// current one; null when no previous secret signs.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// A subscription's state.
#[derive(Debug, Serialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Failing,
    Disabled,
}

impl SubscriptionOut {
    pub fn new(r: SubscriptionRow, pending: i64) -> Self {
        let status = if !r.enabled {
            SubscriptionStatus::Disabled
        } else if r.consecutive_failures > 0 {
            SubscriptionStatus::Failing
        } else {
            SubscriptionStatus::Active
        };
        Self {
            id: r.id,
            url: r.url,
            description: r.description,
            enabled: r.enabled,
            status,
            disabled_reason: r.disabled_reason,
            cursor: r.cursor.cursor(),
            pending,
            created_at: r.created_at,
            updated_at: r.updated_at,
            last_success_at: r.last_success_at,
            last_failure_at: r.last_failure_at,
            last_error: r.last_error,
            consecutive_failures: r.consecutive_failures,
            failing_since: r.failing_since,
            next_attempt_at: r.next_attempt_at,
            previous_secret_expires_at: overlap_end(r.previous_secret_until),
        }
    }
}

/// When the previous secret stops signing, if it has not yet (the row keeps an expired one
/// until the sender next takes the subscription).
pub fn overlap_end(until: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    until.filter(|t| *t > Utc::now())
}

/// A new subscription, with its signing secret (shown this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedOut {
    pub subscription: SubscriptionOut,
    /// The Standard Webhooks signing secret: `whsec_` and the base64 of 32 random bytes. Shown
    /// only here and on rotation; keep it where the receiver verifies `webhook-signature`.
    pub secret: String,
}

/// A rotated secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretOut {
    /// The new signing secret; every delivery from now on is signed with it (its signature
    /// first in `webhook-signature`).
    pub secret: String,
    /// Until when the secret it replaced also signs every delivery; null with an overlap of 0
    /// (the new secret alone signs from now on).
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
}

/// Every subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    pub items: Vec<SubscriptionOut>,
}

/// One delivery attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    pub id: Uuid,
    /// The `webhook-id` sent: the change's feed cursor.
    pub event_id: String,
    pub contact_id: Uuid,
    pub version: i64,
    /// 1 for the first attempt at this change, then counting the failures before it.
    pub attempt: i32,
    /// The subscriber's status code; null when no answer came.
    pub status_code: Option<i32>,
    /// Why no answer came (timeout, connection), or null.
    pub error: Option<String>,
    /// How long the attempt took, in milliseconds.
    pub took_ms: i64,
    pub at: DateTime<Utc>,
}

impl From<DeliveryRow> for DeliveryOut {
    fn from(r: DeliveryRow) -> Self {
        Self {
            id: r.id,
            event_id: r.event_id,
            contact_id: r.contact_id,
            version: r.version,
            attempt: r.attempt,
            status_code: r.status_code,
            error: r.error,
            took_ms: r.took_ms,
            at: r.at,
        }
    }
}

/// A page of the delivery log, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<DeliveryOut>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

// The bodies derive `Deserialize` only for `deny_unknown_fields` in their schemas: the handlers
// read them member by member, naming each problem.

/// The body of `POST /admin/subscriptions`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SubscriptionIn {
    /// `https://` URL each change is POSTed to (`http://` only on loopback, or with
    /// `SYNCROOT_ALLOW_INSECURE_CRMS` for local testing); no user or password in it.
    #[schema(max_length = 2048, format = "uri")]
    url: String,
    #[schema(max_length = 500)]
    description: Option<String>,
    #[schema(schema_with = since_schema)]
    since: Option<String>,
}

/// `since` of a create: `now`, `beginning` or an RFC 3339 time, stated as one of the two, so a
/// schema-valid value is one the handler takes.
fn since_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, OneOfBuilder, SchemaFormat, Type};
    OneOfBuilder::new()
        .description(Some(
            "Where delivery starts: `now` (default: only changes from now on), `beginning` (the \
             whole feed), or an RFC 3339 time (the first change accepted at or after it).",
        ))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["now", "beginning"])),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .into()
}

/// The body of `PATCH /admin/subscriptions/{id}`: any of its members (none: no change).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct SubscriptionPatch {
    /// `false` stops delivery; `true` resumes it from the cursor, clearing the failures.
    #[schema(nullable = false)]
    enabled: Option<bool>,
    #[schema(nullable = false, max_length = 2048, format = "uri")]
    url: Option<String>,
    /// null clears it.
    #[schema(max_length = 500)]
    description: Option<String>,
}

/// The body of `POST /admin/subscriptions/{id}/replay`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ReplayIn {
    /// RFC 3339 time: the cursor goes back to just before the first change accepted at or
    /// after it, and everything from there is delivered again (with the same `webhook-id`s).
    since: DateTime<Utc>,
}

/// The body of `POST /admin/subscriptions/{id}/rotate-secret`, optional (no body, or `null`:
/// the default overlap).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct RotateIn {
    /// Seconds the replaced secret keeps signing deliveries beside the new one, so receivers
    /// can deploy the new secret meanwhile: 0 drops it at once; default 86400 (a day), at most
    /// 604800 (a week).
    #[schema(nullable = false, minimum = 0, maximum = 604_800, default = 86_400)]
    overlap_secs: Option<u32>,
}

/// A checked `SubscriptionIn`.
#[derive(Debug)]
pub struct NewSubscription {
    pub url: String,
    pub description: Option<String>,
    pub start: Start,
}

/// The members of a JSON object body, or the problem that it is not one.
fn members(body: &Value) -> Result<&Map<String, Value>, Vec<FieldError>> {
    body.as_object()
        .ok_or_else(|| vec![FieldError::new("", "the body must be a JSON object")])
}

fn unknown(obj: &Map<String, Value>, known: &[&str], errors: &mut Vec<FieldError>) {
    for k in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        errors.push(FieldError::new(
            format!("/{}", k.replace('~', "~0").replace('/', "~1")),
            format!("unknown member; expected one of {}", known.join(", ")),
        ));
    }
}

fn url(v: &Value, allow_insecure: bool, errors: &mut Vec<FieldError>) -> Option<String> {
    let Some(raw) = v.as_str() else {
        errors.push(FieldError::new("/url", "must be a string"));
        return None;
    };
    let problem = if raw.chars().count() > URL_MAX {
        Some(format!("must be at most {URL_MAX} characters"))
    } else {
        match outbound_url(raw, allow_insecure) {
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                Some("must not carry a user or password".to_owned())
            }
            Ok(_) => None,
            Err(OutboundUrlError::PlainHttp) => Some(
                "must be https:// (http:// only to a loopback address, or with SYNCROOT_ALLOW_INSECURE_CRMS for local testing)".to_owned(),
            ),
            Err(OutboundUrlError::NotHttps) => Some("must be an https:// URL with a host".to_owned()),
        }
    };
    match problem {
        Some(p) => {
            errors.push(FieldError::new("/url", p));
            None
        }
        None => Some(raw.to_owned()),
    }
}

fn description(v: &Value, errors: &mut Vec<FieldError>) -> Option<Option<String>> {
    match v {
        Value::Null => Some(None),
        Value::String(s) if s.chars().count() <= DESCRIPTION_MAX => Some(Some(s.clone())),
        Value::String(_) => {
            errors.push(FieldError::new(
                "/description",
                format!("must be at most {DESCRIPTION_MAX} characters"),
            ));
            None
        }
        _ => {
            errors.push(FieldError::new("/description", "must be a string or null"));
            None
        }
    }
}

fn time(v: &Value, pointer: &str, errors: &mut Vec<FieldError>) -> Option<DateTime<Utc>> {
    match v.as_str().map(DateTime::parse_from_rfc3339) {
        Some(Ok(t)) => Some(t.with_timezone(&Utc)),
        _ => {
            errors.push(FieldError::new(
                pointer,
                "must be an RFC 3339 time such as 2026-12-06T14:00:00Z",
            ));
            None
        }
    }
}

/// Reads the body of a create.
pub fn new_subscription(
    body: &Value,
    allow_insecure: bool,
) -> Result<NewSubscription, Vec<FieldError>> {
    let obj = members(body)?;
    let mut errors = Vec::new();
    unknown(obj, &["url", "description", "since"], &mut errors);
    let url = match obj.get("url") {
        Some(v) => url(v, allow_insecure, &mut errors),
        None => {
            errors.push(FieldError::new("/url", "is required"));
            None
        }
    };
    let description = obj
        .get("description")
        .and_then(|v| description(v, &mut errors))
        .flatten();
    let start = match obj.get("since") {
        None => Some(Start::Now),
        Some(Value::String(s)) if s == "now" => Some(Start::Now),
        Some(Value::String(s)) if s == "beginning" => Some(Start::Beginning),
        Some(Value::String(_)) => time(&obj["since"], "/since", &mut errors).map(Start::At),
        Some(_) => {
            errors.push(FieldError::new(
                "/since",
                "must be \"now\", \"beginning\" or an RFC 3339 time",
            ));
            None
        }
    };
    match (url, start) {
        (Some(url), Some(start)) if errors.is_empty() => Ok(NewSubscription {
            url,
            description,
            start,
        }),
        _ => Err(errors),
    }
}

/// Reads the body of a patch.
pub fn patch(body: &Value, allow_insecure: bool) -> Result<Patch, Vec<FieldError>> {
    let obj = members(body)?;
    let mut errors = Vec::new();
    unknown(obj, &["enabled", "url", "description"], &mut errors);
    let mut p = Patch::default();
    if let Some(v) = obj.get("enabled") {
        match v.as_bool() {
            Some(b) => p.enabled = Some(b),
            None => errors.push(FieldError::new("/enabled", "must be true or false")),
        }
    }
    if let Some(v) = obj.get("url") {
        p.url = url(v, allow_insecure, &mut errors);
    }
    if let Some(v) = obj.get("description") {
        p.description = description(v, &mut errors);
    }
    if errors.is_empty() {
        Ok(p)
    } else {
        Err(errors)
    }
}

/// Reads the body of a replay.
pub fn replay_since(body: &Value) -> Result<DateTime<Utc>, Vec<FieldError>> {
    let obj = members(body)?;
    let mut errors = Vec::new();
    unknown(obj, &["since"], &mut errors);
    let since = match obj.get("since") {
        Some(v) => time(v, "/since", &mut errors),
        None => {
            errors.push(FieldError::new("/since", "is required"));
            None
        }
    };
    match since {
        Some(t) if errors.is_empty() => Ok(t),
        _ => Err(errors),
    }
}

/// Reads the optional body of a rotation: how long the replaced secret keeps signing. A JSON
/// `null` is no body, as the spec states an optional body (`oneOf: [null, RotateIn]`).
pub fn rotation_overlap(body: Option<&Value>) -> Result<Duration, Vec<FieldError>> {
    let Some(body) = body.filter(|b| !b.is_null()) else {
        return Ok(Duration::from_secs(OVERLAP_DEFAULT_SECS));
    };
    let obj = members(body)?;
    let mut errors = Vec::new();
    unknown(obj, &["overlap_secs"], &mut errors);
    let secs = match obj.get("overlap_secs") {
        None => Some(OVERLAP_DEFAULT_SECS),
        Some(v) => match whole_number(v) {
            Some(n) if n <= OVERLAP_MAX_SECS => Some(n),
            _ => {
                errors.push(FieldError::new(
                    "/overlap_secs",
                    format!(
                        "must be a whole number of seconds from 0 to {OVERLAP_MAX_SECS} (a week)"
                    ),
                ));
                None
            }
        },
    };
    match secs {
        Some(n) if errors.is_empty() => Ok(Duration::from_secs(n)),
        _ => Err(errors),
    }
}

/// A JSON number without a fraction, 0 or more. `60.0` counts: JSON Schema's `integer` is any
/// number whose fraction is zero, so a client may send it.
fn whole_number(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= OVERLAP_MAX_SECS as f64)
            .map(|f| f as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pointers(e: Vec<FieldError>) -> Vec<String> {
        e.into_iter().map(|e| e.pointer).collect()
    }

    #[test]
    fn a_create_needs_an_https_url_without_credentials() {
        let ok = new_subscription(&json!({"url": "https://h.example.com/x"}), false).unwrap();
        assert_eq!(ok.start, Start::Now);
        for bad in [
            json!({}),
            json!({"url": 5}),
            json!({"url": "http://h.example.com/x"}),
            json!({"url": "https://u:p@h.example.com/x"}),
            json!({"url": "ftp://h.example.com"}),
            json!({"url": format!("https://h.example.com/{}", "x".repeat(2100))}),
        ] {
            assert_eq!(
                pointers(new_subscription(&bad, false).unwrap_err()),
                ["/url"],
                "{bad}"
            );
        }
        assert!(new_subscription(&json!({"url": "http://h.example.com/x"}), true).is_ok());
    }

    #[test]
    fn since_is_now_beginning_or_a_time() {
        let at = |v: Value| {
            new_subscription(&json!({"url": "https://h.example.com", "since": v}), false)
        };
        assert_eq!(at(json!("beginning")).unwrap().start, Start::Beginning);
        assert!(matches!(
            at(json!("2026-12-06T14:00:00+01:00")).unwrap().start,
            Start::At(_)
        ));
        for bad in [json!("yesterday"), json!(5), json!(null)] {
            assert_eq!(pointers(at(bad.clone()).unwrap_err()), ["/since"], "{bad}");
        }
    }

    #[test]
    fn unknown_members_and_empty_patches_are_refused() {
        let e = new_subscription(
            &json!({"url": "https://h.example.com", "secret": "x"}),
            false,
        );
        assert_eq!(pointers(e.unwrap_err()), ["/secret"]);
        assert!(
            patch(&json!({}), false).is_ok(),
            "an empty merge patch changes nothing"
        );
        assert_eq!(pointers(patch(&json!([]), false).unwrap_err()), [""]);
        assert_eq!(
            pointers(patch(&json!({"enabled": "yes"}), false).unwrap_err()),
            ["/enabled"]
        );
        let p = patch(&json!({"enabled": true, "description": null}), false).unwrap();
        assert_eq!((p.enabled, p.description), (Some(true), Some(None)));
    }

    #[test]
    fn a_rotation_overlap_is_whole_seconds_up_to_a_week_and_a_day_by_default() {
        let day = Duration::from_secs(86_400);
        assert_eq!(rotation_overlap(None).unwrap(), day);
        assert_eq!(rotation_overlap(Some(&json!({}))).unwrap(), day);
        assert_eq!(rotation_overlap(Some(&Value::Null)).unwrap(), day);
        for (given, secs) in [(json!(0), 0), (json!(604_800), 604_800), (json!(60.0), 60)] {
            let body = json!({ "overlap_secs": given });
            assert_eq!(
                rotation_overlap(Some(&body)).unwrap(),
                Duration::from_secs(secs)
            );
        }
        for bad in [
            json!(-1),
            json!(604_801),
            json!(1.5),
            json!("60"),
            json!(null),
        ] {
            let body = json!({ "overlap_secs": bad });
            assert_eq!(
                pointers(rotation_overlap(Some(&body)).unwrap_err()),
                ["/overlap_secs"],
                "{bad}"
            );
        }
        assert_eq!(
            pointers(rotation_overlap(Some(&json!({"overlap": 5}))).unwrap_err()),
            ["/overlap"]
        );
        assert_eq!(
            pointers(rotation_overlap(Some(&json!(5))).unwrap_err()),
            [""]
        );
    }

    #[test]
    fn a_replay_needs_a_time() {
        assert!(replay_since(&json!({"since": "2026-12-06T14:00:00Z"})).is_ok());
        assert_eq!(pointers(replay_since(&json!({})).unwrap_err()), ["/since"]);
        assert_eq!(
            pointers(replay_since(&json!({"since": "now"})).unwrap_err()),
            ["/since"]
        );
    }
}
