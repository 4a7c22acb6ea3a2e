//! Checks a parsed SOQL query against the Contact schema and evaluates it over the store.
//!
//! Semantics follow SOQL: text comparisons are case-insensitive, ids compare by their
//! case-sensitive 15-character key whatever form the literal has, date-time fields only compare
//! with unquoted date-time literals, and nulls sort first ascending, last descending. What it is
//! not: the grammar (`soql.rs`) or HTTP and paging (`query.rs`).
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_comparisonoperators.htm

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::errors::{ErrorCode, SfError};
use super::fields::{FieldDef, Kind, Schema};
use super::soql::{self, Literal, Op};
use super::store::{Contact, Store};
use super::wire::Ordered;
use super::{ids, record};

/// A query checked against the schema, ready to run.
pub struct Plan<'s> {
    select: Vec<&'s FieldDef>,
    filters: Vec<Filter<'s>>,
    /// Field, descending, nulls last.
    order: Vec<(&'s FieldDef, bool, bool)>,
    limit: Option<usize>,
    offset: Option<usize>,
}

impl<'s> Plan<'s> {
    /// Resolves every field (`INVALID_FIELD` when unknown) and types every literal.
    pub fn new(schema: &'s Schema, q: &soql::Query) -> Result<Self, SfError> {
        if !q.object.eq_ignore_ascii_case("Contact") {
            let msg = format!("sObject type '{}' is not supported.", q.object);
            return Err(SfError::new(ErrorCode::InvalidType, msg));
        }
        let one = |name: &String| schema.select(std::slice::from_ref(name)).map(|d| d[0]);
        Ok(Self {
            select: schema.select(&q.fields)?,
            filters: q
                .conditions
                .iter()
                .map(|c| filter(schema, c))
                .collect::<Result<_, _>>()?,
            order: q
                .order
                .iter()
                .map(|k| Ok((one(&k.field)?, k.descending, k.nulls_last)))
                .collect::<Result<_, SfError>>()?,
            limit: q.limit,
            offset: q.offset,
        })
    }

    /// Matching records, ordered, offset and limited, rendered with the selected fields.
    pub fn execute(&self, store: &Store, include_deleted: bool, version: &str) -> Vec<Ordered> {
        self.matching(store, include_deleted)
            .into_iter()
            .map(|c| record::render_fields(c, version, self.select.iter().copied()))
            .collect()
    }

    /// The selected fields, in the order the query names them.
    pub fn selected(&self) -> &[&'s FieldDef] {
        &self.select
    }

    /// Whether the query has an `OFFSET` (which Bulk API 2.0 refuses).
    pub fn has_offset(&self) -> bool {
        self.offset.is_some()
    }

    /// Matching records, ordered, offset and limited.
    pub fn matching<'a>(&self, store: &'a Store, include_deleted: bool) -> Vec<&'a Contact> {
        let mut hits: Vec<&Contact> = store
            .all()
            .filter(|c| include_deleted || !c.is_deleted)
            .filter(|c| self.matches(c))
            .collect();
        hits.sort_by(|a, b| {
            self.order
                .iter()
                .fold(Ordering::Equal, |acc, (def, desc, nulls_last)| {
                    acc.then_with(|| {
                        compare_for_order(&typed(a, def), &typed(b, def), *desc, *nulls_last)
                    })
                })
        });
        hits.into_iter()
            .skip(self.offset.unwrap_or(0))
            .take(self.limit.unwrap_or(usize::MAX))
            .collect()
    }

    pub fn matches(&self, c: &Contact) -> bool {
        self.filters.iter().all(|f| matches(c, f))
    }
}

/// A comparable value of one field.
#[derive(Debug, Clone, PartialEq)]
enum Typed {
    /// Lower-cased for case-insensitive comparison.
    Text(String),
    /// 15-character id key, compared case-sensitively.
    Id(String),
    Time(DateTime<Utc>),
    Bool(bool),
    Null,
}

struct Filter<'s> {
    def: &'s FieldDef,
    op: Op,
    values: Vec<Typed>,
}

/// Resolves a condition's field and types its literals.
fn filter<'s>(schema: &'s Schema, c: &soql::Condition) -> Result<Filter<'s>, SfError> {
    let def = schema.select(std::slice::from_ref(&c.field))?[0];
    let values = c
        .values
        .iter()
        .map(|v| literal(def, v))
        .collect::<Result<Vec<_>, _>>()?;
    if matches!(c.op, Op::Lt | Op::Le | Op::Gt | Op::Ge)
        && values
            .iter()
            .any(|v| matches!(v, Typed::Null | Typed::Bool(_)))
    {
        return Err(SfError::malformed_query(format!(
            "invalid operator on field '{}'",
            def.name
        )));
    }
    Ok(Filter {
        def,
        op: c.op,
        values,
    })
}

fn literal(def: &FieldDef, v: &Literal) -> Result<Typed, SfError> {
    let wrong = |expected: &str| {
        SfError::new(
            ErrorCode::InvalidField,
            format!(
                "value of filter criterion for field '{}' must be of type {expected}",
                def.name
            ),
        )
    };
    match (def.kind, v) {
        (_, Literal::Null) => Ok(Typed::Null),
        (Kind::DateTime, Literal::DateTime(d)) => Ok(Typed::Time(*d)),
        (Kind::DateTime, _) => Err(wrong("dateTime and should not be enclosed in quotes")),
        (Kind::Bool, Literal::Bool(b)) => Ok(Typed::Bool(*b)),
        (Kind::Bool, _) => Err(wrong("boolean and should not be enclosed in quotes")),
        (Kind::Id | Kind::Reference { .. } | Kind::UserRef, Literal::Text(t)) => {
            ids::canonical_15(t).map(Typed::Id).ok_or_else(|| {
                SfError::new(
                    ErrorCode::InvalidQueryFilterOperator,
                    format!("invalid ID field: {t}"),
                )
            })
        }
        (_, Literal::Text(t)) => Ok(Typed::Text(t.to_lowercase())),
        (_, Literal::Number(n)) => Ok(Typed::Text(n.clone())),
        _ => Err(wrong("string and should be enclosed in quotes")),
    }
}

/// A record's value of `def`, in comparable form.
fn typed(c: &Contact, def: &FieldDef) -> Typed {
    match (def.kind, record::value(c, def, record::Flavour::Rest)) {
        (_, Value::Null) => Typed::Null,
        (Kind::DateTime, _) => record::timestamp(c, def).map_or(Typed::Null, Typed::Time),
        (Kind::Bool, v) => Typed::Bool(v.as_bool().unwrap_or(false)),
        (Kind::Id | Kind::Reference { .. } | Kind::UserRef, Value::String(s)) => {
            Typed::Id(s.chars().take(15).collect())
        }
        (_, Value::String(s)) => Typed::Text(s.to_lowercase()),
        (_, other) => Typed::Text(other.to_string()),
    }
}

fn compare(a: &Typed, b: &Typed) -> Option<Ordering> {
    match (a, b) {
        (Typed::Text(x), Typed::Text(y)) | (Typed::Id(x), Typed::Id(y)) => Some(x.cmp(y)),
        (Typed::Time(x), Typed::Time(y)) => Some(x.cmp(y)),
        (Typed::Bool(x), Typed::Bool(y)) => Some(x.cmp(y)),
        (Typed::Null, Typed::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn matches(c: &Contact, f: &Filter<'_>) -> bool {
    let v = typed(c, f.def);
    let eq = |lit: &Typed| compare(&v, lit) == Some(Ordering::Equal);
    match f.op {
        Op::Eq => f.values.iter().any(eq),
        Op::Ne => !f.values.iter().any(eq),
        Op::In => f.values.iter().any(eq),
        Op::NotIn => !f.values.iter().any(eq),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => f
            .values
            .first()
            .and_then(|lit| compare(&v, lit))
            .is_some_and(|o| match f.op {
                Op::Lt => o == Ordering::Less,
                Op::Le => o != Ordering::Greater,
                Op::Gt => o == Ordering::Greater,
                _ => o != Ordering::Less,
            }),
    }
}

fn compare_for_order(a: &Typed, b: &Typed, descending: bool, nulls_last: bool) -> Ordering {
    match (a, b) {
        (Typed::Null, Typed::Null) => Ordering::Equal,
        (Typed::Null, _) => {
            if nulls_last {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (_, Typed::Null) => {
            if nulls_last {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
        _ => {
            let o = compare(a, b).unwrap_or(Ordering::Equal);
            if descending { o.reverse() } else { o }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::store::{Actor, Store, Undo};
    use serde_json::json;

    fn store_with(emails: &[&str]) -> Store {
        let mut s = Store::new("Ext__c");
        let actor = Actor {
            user_id: "005X".into(),
            client: None,
            origin: String::new(),
        };
        for (i, e) in emails.iter().enumerate() {
            let fields = vec![
                ("LastName".into(), json!(format!("L{i}"))),
                ("Email".into(), json!(e)),
            ];
            s.create(fields, &actor, &mut Undo::default()).unwrap();
        }
        s
    }

    fn eval(store: &Store, q: &str) -> Result<Vec<String>, SfError> {
        let schema = Schema::contact("Ext__c");
        let parsed = soql::parse(q)?;
        let filters = parsed
            .conditions
            .iter()
            .map(|c| filter(&schema, c))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(store
            .all()
            .filter(|c| filters.iter().all(|f| matches(c, f)))
            .map(|c| c.id.clone())
            .collect())
    }

    #[test]
    fn text_equality_is_case_insensitive_and_ids_accept_both_forms() {
        let s = store_with(&["a@x.com", "b@x.com"]);
        assert_eq!(
            eval(&s, "SELECT Id FROM Contact WHERE Email = 'A@X.COM'")
                .unwrap()
                .len(),
            1
        );
        let id = s.all().next().unwrap().id.clone();
        let q = format!(
            "SELECT Id FROM Contact WHERE Id IN ('{}', '{}')",
            &id[..15],
            id.to_lowercase()
        );
        assert_eq!(eval(&s, &q).unwrap(), vec![id]);
    }

    #[test]
    fn datetime_fields_need_unquoted_literals() {
        let s = store_with(&["a@x.com"]);
        assert_eq!(
            eval(
                &s,
                "SELECT Id FROM Contact WHERE SystemModstamp > 2000-01-01T00:00:00Z"
            )
            .unwrap()
            .len(),
            1
        );
        assert_eq!(
            eval(
                &s,
                "SELECT Id FROM Contact WHERE SystemModstamp >= 2999-01-01T00:00:00Z"
            )
            .unwrap()
            .len(),
            0
        );
        let e = eval(
            &s,
            "SELECT Id FROM Contact WHERE SystemModstamp > '2000-01-01T00:00:00Z'",
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidField);
        assert_eq!(
            eval(&s, "SELECT Id FROM Contact WHERE Nope__c = 'x'")
                .unwrap_err()
                .code,
            ErrorCode::InvalidField
        );
        assert_eq!(
            eval(&s, "SELECT Id FROM Contact WHERE Id = 'bad'")
                .unwrap_err()
                .code,
            ErrorCode::InvalidQueryFilterOperator
        );
    }

    #[test]
    fn nulls_sort_first_ascending_and_last_descending() {
        let (n, t) = (Typed::Null, Typed::Text("a".into()));
        assert_eq!(compare_for_order(&n, &t, false, false), Ordering::Less);
        assert_eq!(compare_for_order(&n, &t, true, true), Ordering::Greater);
        assert_eq!(
            compare_for_order(&t, &Typed::Text("b".into()), true, true),
            Ordering::Greater
        );
    }
}
