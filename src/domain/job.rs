//! Admin jobs: the kinds of long-running work an admin can ask for, their parameters, and the
//! progress every kind reports.
//!
//! A kind is one variant of [`JobKind`] with its parameters in [`JobParams`]; the API parses a
//! request's `{kind, params}` here, so a new kind (a backfill, say) is a variant, its params
//! struct and its runner, nothing else. Progress is generic: a `done` count, a `total` where
//! the kind knows it up front, and the kind's own named counters.
//!
//! Pure: no I/O. Not here: running jobs (`worker::jobs`), storing them (`store::jobs`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Crm;
use super::fields::{FieldError, escape_pointer, json_type};

/// The kinds of job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Compare every linked CRM record with what SyncRoot holds; optionally repair.
    Drift,
    /// Match every live record of each CRM with SyncRoot's contacts by e-mail: link, merge,
    /// or create.
    Backfill,
}

impl JobKind {
    pub const ALL: [JobKind; 2] = [JobKind::Drift, JobKind::Backfill];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drift => "drift",
            Self::Backfill => "backfill",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A job's parameters, by kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobParams {
    Drift(DriftParams),
    Backfill(BackfillParams),
}

/// Parameters of a drift check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriftParams {
    /// Resolve each differing record by the conflict policy (as a change from its CRM) and
    /// handle each record missing in its CRM as a deletion made there.
    #[serde(default)]
    pub repair: bool,
    /// Every linked record, not only those the CRM modified since the last completed check
    /// started.
    #[serde(default)]
    pub full: bool,
}

/// Parameters of a backfill.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillParams {
    /// Count what the backfill would do (matched, linked, created, updated, conflicts,
    /// duplicates) and write nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// The CRMs whose records are read and matched (`None`: every enabled CRM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crms: Option<Vec<Crm>>,
}

impl JobParams {
    pub fn kind(&self) -> JobKind {
        match self {
            Self::Drift(_) => JobKind::Drift,
            Self::Backfill(_) => JobKind::Backfill,
        }
    }

    /// The parameters as stored and shown.
    pub fn to_json(&self) -> Value {
        match self {
            Self::Drift(p) => serde_json::to_value(p).unwrap_or_default(),
            Self::Backfill(p) => serde_json::to_value(p).unwrap_or_default(),
        }
    }

    /// Parses a request body `{"kind": …, "params": {…}}`; every problem is reported, each
    /// with a JSON Pointer. `params` may be left out when the kind's defaults suit.
    pub fn from_request(body: &Value) -> Result<Self, Vec<FieldError>> {
        let Some(obj) = body.as_object() else {
            return Err(vec![FieldError::new(
                "",
                format!("must be an object, not {}", json_type(body)),
            )]);
        };
        let mut errors = Vec::new();
        for name in obj
            .keys()
            .filter(|k| !["kind", "params"].contains(&k.as_str()))
        {
            errors.push(FieldError::new(
                format!("/{}", escape_pointer(name)),
                "is not a member of a job request (kind, params)",
            ));
        }
        let kind = match obj.get("kind") {
            None => {
                errors.push(FieldError::new("/kind", "is required"));
                None
            }
            Some(Value::String(s)) => JobKind::parse(s).or_else(|| {
                errors.push(FieldError::new(
                    "/kind",
                    format!("'{s}' is not a job kind (known: {})", known_kinds()),
                ));
                None
            }),
            Some(other) => {
                errors.push(FieldError::new(
                    "/kind",
                    format!("must be a string, not {}", json_type(other)),
                ));
                None
            }
        };
        let empty = Value::Object(Default::default());
        let params = obj.get("params").unwrap_or(&empty);
        let parsed = match kind {
            Some(JobKind::Drift) => {
                let mut p = DriftParams::default();
                Params::of(params, "drift", &["repair", "full"], &mut errors).map(|mut r| {
                    r.flag("repair", &mut p.repair);
                    r.flag("full", &mut p.full);
                    Self::Drift(p)
                })
            }
            Some(JobKind::Backfill) => {
                let mut p = BackfillParams::default();
                Params::of(params, "backfill", &["dry_run", "crms"], &mut errors).map(|mut r| {
                    r.flag("dry_run", &mut p.dry_run);
                    p.crms = r.crms("crms");
                    Self::Backfill(p)
                })
            }
            None => None,
        };
        match parsed {
            Some(p) if errors.is_empty() => Ok(p),
            _ => Err(errors),
        }
    }
}

fn known_kinds() -> String {
    JobKind::ALL.map(JobKind::as_str).join(", ")
}

/// A kind's parameters object, read member by member; every problem goes into `errors`.
struct Params<'a> {
    obj: &'a serde_json::Map<String, Value>,
    errors: &'a mut Vec<FieldError>,
}

impl<'a> Params<'a> {
    /// The object, with any member not in `known` reported; `None` when it is not an object.
    fn of(
        params: &'a Value,
        kind: &str,
        known: &[&str],
        errors: &'a mut Vec<FieldError>,
    ) -> Option<Self> {
        let Some(obj) = params.as_object() else {
            errors.push(FieldError::new(
                "/params",
                format!("must be an object, not {}", json_type(params)),
            ));
            return None;
        };
        for name in obj.keys().filter(|n| !known.contains(&n.as_str())) {
            errors.push(FieldError::new(
                format!("/params/{}", escape_pointer(name)),
                format!("is not a parameter of a {kind} job ({})", known.join(", ")),
            ));
        }
        Some(Self { obj, errors })
    }

    /// An optional true or false.
    fn flag(&mut self, name: &str, slot: &mut bool) {
        match self.obj.get(name) {
            None => {}
            Some(Value::Bool(b)) => *slot = *b,
            Some(other) => self.errors.push(FieldError::new(
                format!("/params/{name}"),
                format!("must be true or false, not {}", json_type(other)),
            )),
        }
    }

    /// An optional list of CRM names, at least one (a name given twice counts once).
    fn crms(&mut self, name: &str) -> Option<Vec<Crm>> {
        let pointer = format!("/params/{name}");
        let items = match self.obj.get(name)? {
            Value::Array(items) if !items.is_empty() => items,
            Value::Array(_) => {
                self.errors
                    .push(FieldError::new(pointer, "must name at least one CRM"));
                return None;
            }
            other => {
                self.errors.push(FieldError::new(
                    pointer,
                    format!("must be an array of CRM names, not {}", json_type(other)),
                ));
                return None;
            }
        };
        let known = Crm::ALL.map(Crm::as_str).join(", ");
        let mut crms = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = format!("{pointer}/{i}");
            match item.as_str().map(|s| s.parse::<Crm>()) {
                Some(Ok(crm)) if crms.contains(&crm) => {}
                Some(Ok(crm)) => crms.push(crm),
                Some(Err(_)) => self.errors.push(FieldError::new(
                    at,
                    format!("is not a CRM (known: {known})"),
                )),
                None => self.errors.push(FieldError::new(
                    at,
                    format!("must be a string, not {}", json_type(item)),
                )),
            }
        }
        Some(crms)
    }
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        Self::Queued,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// What a job has done so far: stored after each page, shown by `GET /admin/jobs/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Items handled (for a drift check: records compared or found missing).
    #[serde(default)]
    pub done: u64,
    /// Items in all, where the kind knows it up front (a full drift check counts the linked
    /// records when it starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// The kind's own counters.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
}

impl Progress {
    pub fn add(&mut self, counter: &str, n: u64) {
        *self.counters.entry(counter.to_owned()).or_default() += n;
    }

    /// Adds another tally's counters (not its `done`) to these.
    pub fn absorb(&mut self, other: &Progress) {
        for (name, n) in &other.counters {
            self.add(name, *n);
        }
    }

    /// Items per second since `started_at`, and the seconds left at that rate where the total
    /// is known (`None` before anything is done).
    pub fn rate_and_eta(
        &self,
        started_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (f64, Option<u64>) {
        let secs = (now - started_at).num_milliseconds().max(1) as f64 / 1000.0;
        let rate = self.done as f64 / secs;
        let eta = match self.total {
            Some(total) if rate > 0.0 => {
                Some((total.saturating_sub(self.done) as f64 / rate).ceil() as u64)
            }
            _ => None,
        };
        (rate, eta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pointers(e: Vec<FieldError>) -> Vec<String> {
        e.into_iter().map(|e| e.pointer).collect()
    }

    #[test]
    fn a_drift_request_parses_with_defaults() {
        let p = JobParams::from_request(&json!({"kind": "drift"})).unwrap();
        assert_eq!(p, JobParams::Drift(DriftParams::default()));
        let p =
            JobParams::from_request(&json!({"kind": "drift", "params": {"repair": true}})).unwrap();
        assert_eq!(
            p,
            JobParams::Drift(DriftParams {
                repair: true,
                full: false
            })
        );
        assert_eq!(p.to_json(), json!({"repair": true, "full": false}));
    }

    #[test]
    fn a_backfill_request_parses() {
        let p = JobParams::from_request(&json!({"kind": "backfill"})).unwrap();
        assert_eq!(p, JobParams::Backfill(BackfillParams::default()));
        let p = JobParams::from_request(&json!({"kind": "backfill", "params": {"dry_run": true}}))
            .unwrap();
        assert_eq!(p.to_json(), json!({"dry_run": true}));
        let e = JobParams::from_request(
            &json!({"kind": "backfill", "params": {"dry_run": 1, "repair": true}}),
        )
        .unwrap_err();
        assert_eq!(pointers(e), ["/params/repair", "/params/dry_run"]);
        let p = JobParams::from_request(
            &json!({"kind": "backfill", "params": {"crms": ["salesforce", "salesforce"]}}),
        )
        .unwrap();
        assert_eq!(
            p.to_json(),
            json!({"dry_run": false, "crms": ["salesforce"]})
        );
        for (crms, pointer) in [
            (json!([]), "/params/crms"),
            (json!("hubspot"), "/params/crms"),
            (json!(["hubspot", "pipedrive"]), "/params/crms/1"),
            (json!([7]), "/params/crms/0"),
        ] {
            let e = JobParams::from_request(&json!({"kind": "backfill", "params": {"crms": crms}}))
                .unwrap_err();
            assert_eq!(pointers(e), [pointer], "{crms}");
        }
    }

    #[test]
    fn every_bad_member_is_named() {
        let e = JobParams::from_request(
            &json!({"kind": "drift", "params": {"repair": "yes", "fast": true}, "x": 1}),
        )
        .unwrap_err();
        assert_eq!(pointers(e), ["/x", "/params/fast", "/params/repair"]);
        assert_eq!(
            pointers(JobParams::from_request(&json!({"kind": "backup"})).unwrap_err()),
            ["/kind"]
        );
        assert_eq!(
            pointers(JobParams::from_request(&json!({"params": {}})).unwrap_err()),
            ["/kind"]
        );
        assert_eq!(
            pointers(JobParams::from_request(&json!({"kind": "drift", "params": []})).unwrap_err()),
            ["/params"]
        );
        assert_eq!(
            pointers(JobParams::from_request(&json!([])).unwrap_err()),
            [""]
        );
    }

    #[test]
    fn the_eta_needs_a_total_and_a_rate() {
        let start = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let now = start + chrono::Duration::seconds(10);
        let mut p = Progress {
            done: 50,
            total: Some(150),
            ..Progress::default()
        };
        assert_eq!(p.rate_and_eta(start, now), (5.0, Some(20)));
        p.total = None;
        assert_eq!(p.rate_and_eta(start, now), (5.0, None));
        p.done = 0;
        p.total = Some(10);
        assert_eq!(p.rate_and_eta(start, now), (0.0, None));
    }
}
