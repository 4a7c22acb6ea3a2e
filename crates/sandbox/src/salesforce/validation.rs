//! Validation rules on Contact, set through `/__sandbox/validation-rules`.
//!
//! What it is: the one kind of rule tests need — "this field's resulting value contains that
//! text" — checked on every create and update (single-record, upsert, sObject Collections and
//! simulated UI edits alike), after the required-field check and before the unique-index check,
//! as Salesforce runs custom validation after system validation and before saving. A failure is
//! `FIELD_CUSTOM_VALIDATION_EXCEPTION` naming the rule's field. What it is not: Salesforce's
//! formula language; there are no `ISCHANGED`/`PRIORVALUE` conditions, and deletes are never
//! validated (as in Salesforce).
//!
//! Vendor doc: https://help.salesforce.com/s/articleView?id=sf.fields_about_field_validation.htm
//! (rules and the error location), and the `FIELD_CUSTOM_VALIDATION_EXCEPTION` entry of
//! https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_concepts_core_data_objects.htm

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::errors::{ErrorCode, SfError};
use super::fields::Schema;

/// One active rule: the record is refused when `field`'s value contains `contains`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationRule {
    /// Rule name, unique within the set (Salesforce's "Rule Name"); not shown to clients.
    pub name: String,
    /// API name of the checked field; stored in the schema's capitalisation.
    pub field: String,
    /// Case-sensitive substring that makes a value invalid, as Salesforce's `CONTAINS()`.
    pub contains: String,
    /// The error message clients receive.
    pub message: String,
}

/// The org's active rules, in the order they were given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidationRules(Vec<ValidationRule>);

impl ValidationRules {
    /// Checks a replacement set from the control API: fields must be writable Contact fields,
    /// names unique and non-empty, substrings non-empty. Every problem is listed.
    pub fn parse(body: &[u8], schema: &Schema) -> Result<Self, String> {
        let rules: Vec<ValidationRule> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let mut problems = Vec::new();
        let mut names = HashSet::new();
        let mut out = Vec::with_capacity(rules.len());
        for (i, mut rule) in rules.into_iter().enumerate() {
            if rule.name.trim().is_empty() {
                problems.push(format!("rule {i}: name must not be empty"));
            } else if !names.insert(rule.name.clone()) {
                problems.push(format!("rule {i}: duplicate name {:?}", rule.name));
            }
            if rule.contains.is_empty() {
                problems.push(format!("rule {i}: contains must not be empty"));
            }
            match schema.find(&rule.field) {
                Some(def) if def.writable => rule.field = def.name.clone(),
                Some(def) => problems.push(format!("rule {i}: {} is not writable", def.name)),
                None => problems.push(format!("rule {i}: no field {:?} on Contact", rule.field)),
            }
            out.push(rule);
        }
        if problems.is_empty() {
            Ok(Self(out))
        } else {
            Err(problems.join("; "))
        }
    }

    pub fn rules(&self) -> &[ValidationRule] {
        &self.0
    }

    /// The first rule the record's values break, as the error Salesforce answers. Salesforce
    /// lists every failing rule; one is enough for what the sandbox is used for.
    pub fn check(&self, values: &BTreeMap<String, Value>) -> Result<(), SfError> {
        let broken = self.0.iter().find(|rule| {
            values
                .get(&rule.field)
                .and_then(Value::as_str)
                .is_some_and(|text| text.contains(&rule.contains))
        });
        match broken {
            None => Ok(()),
            Some(rule) => Err(SfError::new(
                ErrorCode::FieldCustomValidationException,
                rule.message.clone(),
            )
            .with_fields([rule.field.as_str()])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::contact("SyncRoot_Id__c")
    }

    fn parse(v: Value) -> Result<ValidationRules, String> {
        ValidationRules::parse(&serde_json::to_vec(&v).unwrap(), &schema())
    }

    #[test]
    fn rules_name_fields_in_schema_capitalisation() {
        let rules = parse(json!([{"name": "NoTestTitles", "field": "title",
            "contains": "INVALID", "message": "Title may not contain INVALID"}]))
        .unwrap();
        assert_eq!(rules.rules()[0].field, "Title");
    }

    #[test]
    fn bad_rule_sets_are_refused_with_every_problem() {
        let err = parse(json!([
            {"name": "A", "field": "Nope__c", "contains": "x", "message": "m"},
            {"name": "A", "field": "Title", "contains": "", "message": "m"},
            {"name": "B", "field": "CreatedDate", "contains": "x", "message": "m"},
        ]))
        .unwrap_err();
        for part in [
            "no field \"Nope__c\"",
            "duplicate name",
            "contains must not be empty",
            "CreatedDate is not writable",
        ] {
            assert!(err.contains(part), "{err}");
        }
        assert!(parse(json!([{"name": "A", "field": "Title", "contains": "x"}])).is_err());
        assert_eq!(parse(json!([])).unwrap(), ValidationRules::default());
    }

    #[test]
    fn a_value_containing_the_text_breaks_the_rule() {
        let rules = parse(json!([{"name": "NoTestTitles", "field": "Title",
            "contains": "INVALID", "message": "Title may not contain INVALID"}]))
        .unwrap();
        let record = |title: &str| BTreeMap::from([("Title".to_string(), json!(title))]);
        let e = rules.check(&record("An INVALID title")).unwrap_err();
        assert_eq!(e.code, ErrorCode::FieldCustomValidationException);
        assert_eq!(e.message, "Title may not contain INVALID");
        assert_eq!(e.fields, vec!["Title"]);
        assert!(
            rules.check(&record("an invalid title")).is_ok(),
            "case-sensitive"
        );
        assert!(
            rules.check(&BTreeMap::new()).is_ok(),
            "an empty field passes"
        );
    }
}
