//! Field mapping: which CRM field each unified field is written to, per CRM.
//!
//! Each CRM has a default mapping (its standard fields). Configuration overrides it with a
//! comma-separated list of `field=target` pairs: `job_title=Job_Title__c` renames,
//! `company=-` leaves the field out, `company=Company__c` maps a field the CRM has no standard
//! home for to a custom field.

use crate::domain::fields::{FIELDS, Field};
use crate::domain::{ContactFields, FieldValues};

/// Where each unified field goes in one CRM; `None` leaves it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldMap {
    targets: Vec<(Field, Option<String>)>,
}

impl FieldMap {
    /// The CRM's default mapping.
    pub fn defaults(defaults: &[(Field, Option<&str>)]) -> Self {
        Self {
            targets: defaults
                .iter()
                .map(|(f, t)| (*f, t.map(str::to_owned)))
                .collect(),
        }
    }

    /// Builds a map from the CRM's defaults and the configured overrides.
    pub fn parse(defaults: &[(Field, Option<&str>)], overrides: &str) -> Result<Self, String> {
        let mut targets: Vec<(Field, Option<String>)> = defaults
            .iter()
            .map(|(f, t)| (*f, t.map(str::to_owned)))
            .collect();
        for pair in overrides
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (name, target) = pair
                .split_once('=')
                .ok_or_else(|| format!("'{pair}' is not field=target"))?;
            let (name, target) = (name.trim(), target.trim());
            let field = FIELDS
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.field)
                .ok_or_else(|| {
                    format!(
                        "'{name}' is not a contact field (fields: {})",
                        FIELDS.map(|s| s.name).join(", ")
                    )
                })?;
            let valid = !target.is_empty()
                && target
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_');
            if target != "-" && !valid {
                return Err(format!(
                    "'{target}' is not a CRM field name (letters, digits, '_'; '-' leaves the field out)"
                ));
            }
            let value = (target != "-").then(|| target.to_owned());
            match targets.iter_mut().find(|(f, _)| *f == field) {
                Some(slot) => slot.1 = value,
                None => targets.push((field, value)),
            }
        }
        Ok(Self { targets })
    }

    /// The CRM field a unified field is written to, if any.
    pub fn target(&self, field: Field) -> Option<&str> {
        self.targets
            .iter()
            .find(|(f, _)| *f == field)
            .and_then(|(_, t)| t.as_deref())
    }

    /// The unified field a CRM field comes from, if any (for reading CRM records back).
    pub fn source(&self, crm_field: &str) -> Option<Field> {
        self.targets
            .iter()
            .find(|(_, t)| {
                t.as_deref()
                    .is_some_and(|t| t.eq_ignore_ascii_case(crm_field))
            })
            .map(|(f, _)| *f)
    }

    /// The unified fields this CRM holds.
    pub fn fields(&self) -> impl Iterator<Item = Field> + '_ {
        self.pairs().map(|(f, _)| f)
    }

    /// What the CRM holds of `contact` after a successful write: its mapped fields' values,
    /// normalised as a CRM's reported values are (so " Ada " written reads back as "Ada" and
    /// compares equal).
    pub fn project(&self, contact: &ContactFields) -> FieldValues {
        let mut values = FieldValues::default();
        for field in self.fields() {
            values.set_reported(field, contact.get(field));
        }
        values
    }

    /// Every mapped pair.
    pub fn pairs(&self) -> impl Iterator<Item = (Field, &str)> {
        self.targets
            .iter()
            .filter_map(|(f, t)| t.as_deref().map(|t| (*f, t)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: [(Field, Option<&str>); 3] = [
        (Field::Email, Some("email")),
        (Field::JobTitle, Some("jobtitle")),
        (Field::Company, None),
    ];

    #[test]
    fn overrides_rename_add_and_remove_fields() {
        let m = FieldMap::parse(
            &DEFAULTS,
            "job_title=Job_Title__c, company=Company__c, email=-",
        )
        .unwrap();
        assert_eq!(m.target(Field::JobTitle), Some("Job_Title__c"));
        assert_eq!(m.target(Field::Company), Some("Company__c"));
        assert_eq!(m.target(Field::Email), None);
        assert_eq!(m.source("job_title__c"), Some(Field::JobTitle));
    }

    #[test]
    fn bad_overrides_are_explained() {
        assert!(
            FieldMap::parse(&DEFAULTS, "nickname=x")
                .unwrap_err()
                .contains("not a contact field")
        );
        assert!(
            FieldMap::parse(&DEFAULTS, "email")
                .unwrap_err()
                .contains("field=target")
        );
        assert!(
            FieldMap::parse(&DEFAULTS, "email=a b")
                .unwrap_err()
                .contains("not a CRM field name")
        );
    }
}
